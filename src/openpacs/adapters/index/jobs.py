"""Index statements of the job queue, the routing rules, study stability and alerts (issue 5).

Claiming a job: the due pending jobs are looked at in priority order; for each one's
queue, the running jobs are counted and the job taken only while they are fewer than
its slots. On PostgreSQL a transaction-level advisory lock per queue serialises the
claimers of one queue across nodes, and ``FOR UPDATE SKIP LOCKED`` keeps claimers of
different queues from waiting on each other; SQLite's write lock serialises everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import aware, json_value
from openpacs.domain.jobs import Job, JobKind, JobState, Parked
from openpacs.domain.rules import Action, Condition, Rule, RuleEvent


def _queue_key(queue: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"queue:{queue}".encode(), digest_size=8).digest(), "big", signed=True)


def _job(row: Any) -> Job:
    return Job(
        kind=JobKind(row.kind),
        queue=row.queue,
        params=json_value(row.params),
        priority=row.priority,
        state=JobState(row.state),
        pk=int(row.pk),
        study_instance_uid=row.study_instance_uid,
        progress=json_value(row.progress) or {},
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=aware(row.next_attempt_at),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        finished_at=aware(row.finished_at),
        holder=row.holder,
    )


class JobTable:
    """The JobStore port over one connection (inside the session's transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._pg = connection.dialect.name == "postgresql"

    # -- jobs -------------------------------------------------------------------------------

    def enqueue(self, job: Job, slots: int, dedupe_key: str, pks: Sequence[int], now: datetime) -> int:
        """Have the instances *pks* (keys of the index) of a study sent by a job of *dedupe_key*
        (rule|destination|study). Bookkeeping is per study: a job covers the instance keys
        ``after_pk < pk <= upto_pk``; a job not started yet grows to take new instances; one
        that has started is followed by another. An instance whose key is below a started job's
        range (on PostgreSQL keys are not given in commit order) is listed on the next job.
        Returns the job's key."""
        j = t.job
        cursor = int(
            self.connection.execute(
                sa.select(sa.func.coalesce(sa.func.max(j.c.upto_pk), 0)).where(
                    j.c.dedupe_key == dedupe_key, j.c.state != str(JobState.CANCELLED)
                )
            ).scalar_one()
        )
        waiting = self.connection.execute(
            sa.select(j.c.pk, j.c.after_pk, j.c.upto_pk, j.c.params)
            .where(j.c.dedupe_key == dedupe_key, j.c.state == str(JobState.PENDING), j.c.attempts == 0)
            .order_by(j.c.pk.desc())
            .limit(1)
        ).first()
        newest = max(pks, default=0)
        if waiting is not None:
            after = int(waiting.after_pk or 0)
            extra = sorted(set(json_value(waiting.params).get("extra_pks", [])) | {p for p in pks if p <= after})
            params = {**json_value(waiting.params), "extra_pks": extra}
            grown = self.connection.execute(
                sa.update(j)
                # only while no worker has claimed it (PostgreSQL re-checks this after a claim commits)
                .where(j.c.pk == waiting.pk, j.c.state == str(JobState.PENDING), j.c.attempts == 0)
                .values(upto_pk=max(int(waiting.upto_pk or 0), newest), params=params, updated_at=now)
            ).rowcount
            if grown:
                return int(waiting.pk)
            cursor = max(cursor, int(waiting.upto_pk or 0))
        extra = sorted({p for p in pks if p <= cursor})
        return int(
            self.connection.execute(
                sa.insert(j)
                .values(
                    kind=str(job.kind),
                    queue=job.queue[:300],
                    slots=max(1, slots),
                    state=str(JobState.PENDING),
                    priority=job.priority,
                    dedupe_key=dedupe_key[:500],
                    study_instance_uid=job.study_instance_uid,
                    after_pk=cursor,
                    upto_pk=max(cursor, newest),
                    params={**job.params, "extra_pks": extra},
                    progress=job.progress,
                    next_attempt_at=job.next_attempt_at or now,
                    created_at=now,
                    updated_at=now,
                )
                .returning(j.c.pk)
            ).scalar_one()
        )

    def waiting(self, dedupe_key: str) -> bool:
        """Whether a job of this key has not started yet (pending, or paused)."""
        j = t.job
        states = [str(JobState.PENDING), str(JobState.PAUSED)]
        found = self.connection.execute(
            sa.select(j.c.pk).where(j.c.dedupe_key == dedupe_key, j.c.state.in_(states)).limit(1)
        ).first()
        return found is not None

    def queued(self, dedupe_key: str) -> bool:
        """Whether a job of this key waits, runs, is paused or is done (not failed nor cancelled)."""
        j = t.job
        states = [str(JobState.PENDING), str(JobState.RUNNING), str(JobState.PAUSED), str(JobState.DONE)]
        found = self.connection.execute(
            sa.select(j.c.pk).where(j.c.dedupe_key == dedupe_key, j.c.state.in_(states)).limit(1)
        ).first()
        return found is not None

    def add(self, job: Job, slots: int, now: datetime, *, dedupe_key: str = "") -> int:
        """A job of its own (no instance range: a retrieval, a prefetch, a migration)."""
        j = t.job
        return int(
            self.connection.execute(
                sa.insert(j)
                .values(
                    kind=str(job.kind),
                    queue=job.queue[:300],
                    slots=max(1, slots),
                    state=str(JobState.PENDING),
                    priority=job.priority,
                    study_instance_uid=job.study_instance_uid,
                    dedupe_key=dedupe_key[:500],
                    params=job.params,
                    progress=job.progress,
                    next_attempt_at=job.next_attempt_at or now,
                    created_at=now,
                    updated_at=now,
                )
                .returning(j.c.pk)
            ).scalar_one()
        )

    def claim(self, holder: str, now: datetime, lease: timedelta) -> Job | None:
        """Take the first due job whose queue has a free slot; expired leases are taken back first."""
        j = t.job
        self.connection.execute(
            sa.update(j)
            .where(j.c.state == str(JobState.RUNNING), j.c.lease_expires_at < now)
            .values(state=str(JobState.PENDING), holder="", updated_at=now, last_error="its worker stopped")
        )
        due = self.connection.execute(
            sa.select(j.c.queue, j.c.slots)
            .where(j.c.state == str(JobState.PENDING), j.c.next_attempt_at <= now)
            .order_by(j.c.priority.desc(), j.c.pk)
            .limit(50)
        ).all()
        seen: set[str] = set()
        for queue, slots in due:
            if queue in seen:
                continue
            seen.add(queue)
            if self._pg:
                self.connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_queue_key(queue))))
            running = self.connection.execute(
                sa.select(sa.func.count()).where(j.c.queue == queue, j.c.state == str(JobState.RUNNING))
            ).scalar_one()
            if running >= slots:
                continue
            select = (
                sa.select(j)
                .where(j.c.queue == queue, j.c.state == str(JobState.PENDING), j.c.next_attempt_at <= now)
                .order_by(j.c.priority.desc(), j.c.pk)
                .limit(1)
            )
            if self._pg:
                select = select.with_for_update(skip_locked=True)
            row = self.connection.execute(select).first()
            if row is None:
                continue
            self.connection.execute(
                sa.update(j)
                .where(j.c.pk == row.pk)
                .values(
                    state=str(JobState.RUNNING),
                    holder=holder[:200],
                    lease_expires_at=now + lease,
                    attempts=j.c.attempts + 1,
                    updated_at=now,
                )
            )
            return self.job(int(row.pk))
        return None

    def job(self, pk: int) -> Job | None:
        row = self.connection.execute(sa.select(t.job).where(t.job.c.pk == pk)).first()
        return None if row is None else _job(row)

    def range_of(self, pk: int) -> tuple[int, int | None]:
        row = self.connection.execute(sa.select(t.job.c.after_pk, t.job.c.upto_pk).where(t.job.c.pk == pk)).one()
        return int(row[0] or 0), None if row[1] is None else int(row[1])

    def jobs(self, state: str | None, limit: int, before: int | None) -> list[Job]:
        j = t.job
        select = sa.select(j).order_by(j.c.pk.desc()).limit(limit)
        if state:
            select = select.where(j.c.state == state)
        if before is not None:
            select = select.where(j.c.pk < before)
        return [_job(r) for r in self.connection.execute(select)]

    def heartbeat(self, pk: int, holder: str, progress: dict[str, Any], now: datetime, lease: timedelta) -> str:
        """Renew the lease and record progress; returns the job's state (paused, cancelled...)."""
        j = t.job
        self.connection.execute(
            sa.update(j)
            .where(j.c.pk == pk, j.c.holder == holder, j.c.state == str(JobState.RUNNING))
            .values(progress=progress, lease_expires_at=now + lease, updated_at=now)
        )
        return str(self.connection.execute(sa.select(j.c.state).where(j.c.pk == pk)).scalar_one())

    def finish(
        self,
        pk: int,
        holder: str,
        state: JobState,
        progress: dict[str, Any],
        now: datetime,
        *,
        error: str = "",
        next_attempt_at: datetime | None = None,
        reset_attempts: bool = False,
    ) -> None:
        """End a run: done, failed, or pending again (a retry at *next_attempt_at*). A job
        paused or cancelled meanwhile stays so."""
        j = t.job
        values: dict[str, Any] = {
            "state": str(state),
            "progress": progress,
            "holder": "",
            "lease_expires_at": None,
            "last_error": error[:4000],
            "updated_at": now,
        }
        if state in (JobState.DONE, JobState.FAILED):
            values["finished_at"] = now
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if reset_attempts:
            values["attempts"] = 0
        self.connection.execute(
            sa.update(j).where(j.c.pk == pk, j.c.holder == holder, j.c.state == str(JobState.RUNNING)).values(values)
        )
        current = self.connection.execute(sa.select(j.c.state, j.c.holder).where(j.c.pk == pk)).one()
        if current.state in (str(JobState.PAUSED), str(JobState.CANCELLED)) and current.holder == holder:
            # paused or cancelled while it ran: keep that state, record the progress
            self.connection.execute(
                sa.update(j).where(j.c.pk == pk).values(progress=progress, holder="", lease_expires_at=None)
            )

    def set_state(self, pk: int, state: JobState, allowed_from: Sequence[JobState], now: datetime) -> bool:
        j = t.job
        values: dict[str, Any] = {"state": str(state), "updated_at": now}
        if state is JobState.PENDING:
            values.update(next_attempt_at=now, attempts=0, finished_at=None)
        if state is JobState.CANCELLED:
            values["finished_at"] = now
        return bool(
            self.connection.execute(
                sa.update(j).where(j.c.pk == pk, j.c.state.in_([str(s) for s in allowed_from])).values(values)
            ).rowcount
        )

    def park(self, pk: int, items: Sequence[tuple[str, str, str]], now: datetime) -> None:
        """Set instances aside: (SOP Instance UID, status, reason)."""
        if items:
            self.connection.execute(
                sa.insert(t.job_parked),
                [
                    {"job_pk": pk, "sop_instance_uid": u, "status": s[:16], "reason": r, "created_at": now}
                    for u, s, r in items
                ],
            )

    def parked(self, pk: int) -> list[Parked]:
        p = t.job_parked
        rows = self.connection.execute(sa.select(p).where(p.c.job_pk == pk).order_by(p.c.pk))
        return [Parked(pk, r.sop_instance_uid, r.status, r.reason, aware(r.created_at)) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self.connection.execute(sa.select(t.job.c.state, sa.func.count()).group_by(t.job.c.state))
        return {r[0]: int(r[1]) for r in rows}

    # -- study stability ------------------------------------------------------------------

    def touch_studies(self, study_uids: Sequence[str], due: datetime) -> None:
        """Each study is stable at *due* unless an instance arrives before (then later)."""
        s = t.study_stability
        uids = sorted(set(study_uids))
        if not uids:
            return
        self.connection.execute(sa.delete(s).where(s.c.study_instance_uid.in_(uids)))
        self.connection.execute(sa.insert(s), [{"study_instance_uid": u, "due_at": due} for u in uids])

    def take_stable(self, now: datetime, limit: int) -> list[str]:
        """The studies stable by *now*, taken off the table."""
        s = t.study_stability
        select = sa.select(s.c.study_instance_uid).where(s.c.due_at <= now).order_by(s.c.due_at).limit(limit)
        if self._pg:
            select = select.with_for_update(skip_locked=True)
        uids = [r[0] for r in self.connection.execute(select)]
        if uids:
            self.connection.execute(sa.delete(s).where(s.c.study_instance_uid.in_(uids)))
        return uids

    # -- alerts ---------------------------------------------------------------------------

    def add_alert(self, kind: str, message: str, details: dict[str, Any], now: datetime) -> None:
        self.connection.execute(
            sa.insert(t.alert).values(kind=kind[:40], message=message, details=details, created_at=now)
        )

    def alerts(self, limit: int, open_only: bool) -> list[dict[str, Any]]:
        a = t.alert
        select = sa.select(a).order_by(a.c.pk.desc()).limit(limit)
        if open_only:
            select = select.where(a.c.acknowledged_at.is_(None))
        return [
            {
                "id": int(r.pk),
                "kind": r.kind,
                "message": r.message,
                "details": json_value(r.details),
                "created_at": aware(r.created_at).isoformat(),
                "acknowledged_at": None if r.acknowledged_at is None else aware(r.acknowledged_at).isoformat(),
            }
            for r in self.connection.execute(select)
        ]

    def acknowledge_alert(self, pk: int, now: datetime) -> bool:
        a = t.alert
        return bool(
            self.connection.execute(
                sa.update(a).where(a.c.pk == pk, a.c.acknowledged_at.is_(None)).values(acknowledged_at=now)
            ).rowcount
        )


class RuleTable:
    """The RuleStore port: routing rules."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @staticmethod
    def _rule(row: Any) -> Rule:
        return Rule(
            name=row.name,
            event=RuleEvent(row.event),
            conditions=[Condition.of(c["keyword"], c["pattern"], c["kind"]) for c in json_value(row.conditions)],
            actions=[Action.from_json(a) for a in json_value(row.actions)],
            enabled=row.enabled,
            priority=row.priority,
            description=row.description,
            pk=int(row.pk),
            created_at=aware(row.created_at),
            updated_at=aware(row.updated_at),
            source=row.source,
            version=int(row.version),
        )

    def rules(self) -> list[Rule]:
        r = t.route_rule
        return [
            self._rule(row) for row in self.connection.execute(sa.select(r).order_by(r.c.priority.desc(), r.c.name))
        ]

    def rule(self, name: str) -> Rule | None:
        row = self.connection.execute(sa.select(t.route_rule).where(t.route_rule.c.name == name)).first()
        return None if row is None else self._rule(row)

    @staticmethod
    def _values(rule: Rule, now: datetime) -> dict[str, Any]:
        return {
            "event": str(rule.event),
            "conditions": [c.to_json() for c in rule.conditions],
            "actions": [a.to_json() for a in rule.actions],
            "enabled": rule.enabled,
            "priority": rule.priority,
            "description": rule.description[:400],
            "updated_at": now,
        }

    def add_rule(self, rule: Rule, now: datetime) -> None:
        self.connection.execute(
            sa.insert(t.route_rule).values(
                name=rule.name, source=rule.source, created_at=now, **self._values(rule, now)
            )
        )

    def remove_rule(self, name: str) -> bool:
        return bool(self.connection.execute(sa.delete(t.route_rule).where(t.route_rule.c.name == name)).rowcount)

    def update_rule(self, rule: Rule, now: datetime) -> int:
        """Replace a rule's definition; its new version number."""
        r = t.route_rule
        version = int(self.connection.execute(sa.select(r.c.version).where(r.c.name == rule.name)).scalar_one()) + 1
        self.connection.execute(
            sa.update(r).where(r.c.name == rule.name).values(version=version, **self._values(rule, now))
        )
        return version

    def add_rule_history(
        self, name: str, version: int, change: str, rule: dict[str, Any], by: str, now: datetime
    ) -> None:
        self.connection.execute(
            sa.insert(t.rule_history).values(
                rule_name=name, version=version, change=change, rule=rule, changed_by=by[:64], changed_at=now
            )
        )

    def rule_history(self, name: str) -> list[dict[str, Any]]:
        h = t.rule_history
        rows = self.connection.execute(sa.select(h).where(h.c.rule_name == name).order_by(h.c.pk))
        return [
            {"version": r.version, "change": r.change, "rule": r.rule, "changed_by": r.changed_by,
             "changed_at": aware(r.changed_at).isoformat()}
            for r in rows
        ]  # fmt: skip

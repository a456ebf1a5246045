"""Index statements of storage commitment requests (table ``storage_commitment``) and of the lossy
copies made for routing (``derived_instance``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import json_value
from openpacs.domain.commitment import CommitmentState


class CommitmentTable:
    """The CommitmentStore port over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add_commitment(
        self,
        transaction_uid: str,
        job_pk: int | None,
        node: str,
        study_uid: str,
        instances: Sequence[tuple[str, str]],
        delete_after: bool,
        now: datetime,
    ) -> None:
        self.connection.execute(
            sa.insert(t.storage_commitment).values(
                transaction_uid=transaction_uid,
                job_pk=job_pk,
                node=node,
                study_instance_uid=study_uid,
                state=str(CommitmentState.REQUESTED),
                delete_after=delete_after,
                instances=[list(i) for i in instances],
                failed=[],
                requested_at=now,
            )
        )

    def commitment(self, transaction_uid: str) -> dict[str, Any] | None:
        c = t.storage_commitment
        row = self.connection.execute(sa.select(c).where(c.c.transaction_uid == transaction_uid)).first()
        if row is None:
            return None
        return {
            "transaction_uid": row.transaction_uid,
            "job": row.job_pk,
            "node": row.node,
            "study_instance_uid": row.study_instance_uid,
            "state": row.state,
            "delete_after": bool(row.delete_after),
            "instances": [tuple(i) for i in json_value(row.instances)],
            "failed": [tuple(f) for f in json_value(row.failed)],
            "requested_at": row.requested_at,
            "answered_at": row.answered_at,
        }

    def answer_commitment(
        self, transaction_uid: str, state: CommitmentState, failed: Sequence[tuple[str, str, int]], now: datetime
    ) -> bool:
        """Record the answer; False when it was answered already (a repeated N-EVENT-REPORT)."""
        c = t.storage_commitment
        return bool(
            self.connection.execute(
                sa.update(c)
                .where(c.c.transaction_uid == transaction_uid, c.c.state == str(CommitmentState.REQUESTED))
                .values(state=str(state), failed=[list(f) for f in failed], answered_at=now)
            ).rowcount
        )

    def commitments_of_job(self, job_pk: int) -> list[dict[str, Any]]:
        c = t.storage_commitment
        uids = self.connection.execute(
            sa.select(c.c.transaction_uid).where(c.c.job_pk == job_pk).order_by(c.c.requested_at)
        ).scalars()
        return [found for uid in list(uids) if (found := self.commitment(uid)) is not None]


class DerivedTable:
    """The DerivedStore port: which lossy copy was made of which instance."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def derived_of(self, source_uid: str, kind: str) -> str | None:
        d = t.derived_instance
        found = self.connection.execute(
            sa.select(d.c.derived_sop_instance_uid).where(d.c.source_sop_instance_uid == source_uid, d.c.kind == kind)
        ).scalar()
        return None if found is None else str(found)

    def add_derived(self, source_uid: str, kind: str, derived_uid: str, now: datetime) -> str:
        """Remember a copy; the one remembered first wins (returned)."""
        known = self.derived_of(source_uid, kind)
        if known is not None:
            return known
        self.connection.execute(
            sa.insert(t.derived_instance).values(
                source_sop_instance_uid=source_uid,
                kind=kind[:100],
                derived_sop_instance_uid=derived_uid,
                created_at=now,
            )
        )
        return derived_uid

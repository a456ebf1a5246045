"""Index statements of migrations: the studies a migration job walks (table ``migration_item``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import json_value
from openpacs.domain.migration import ItemState, MigrationItem

_CHUNK = 500


def _item(row: Any) -> MigrationItem:
    return MigrationItem(
        study_instance_uid=row.study_instance_uid,
        patient_id=row.patient_id,
        study_date=row.study_date,
        state=ItemState(row.state),
        there_series=row.there_series,
        there_instances=row.there_instances,
        here_series=row.here_series,
        here_instances=row.here_instances,
        detail=json_value(row.detail) or {},
        pk=int(row.pk),
    )


class MigrationTable:
    """The MigrationStore port over one connection (inside the session's transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add_items(self, job_pk: int, items: Sequence[MigrationItem], now: datetime) -> int:
        """List studies on a migration; a study listed already keeps its row. Returns how many were new."""
        m = t.migration_item
        added = 0
        for start in range(0, len(items), _CHUNK):
            chunk = {i.study_instance_uid: i for i in items[start : start + _CHUNK]}
            known = set(
                self.connection.execute(
                    sa.select(m.c.study_instance_uid).where(m.c.job_pk == job_pk, m.c.study_instance_uid.in_(chunk))
                ).scalars()
            )
            rows = [
                {
                    "job_pk": job_pk,
                    "study_instance_uid": uid,
                    "patient_id": item.patient_id[:64],
                    "study_date": item.study_date[:16],
                    "state": str(item.state),
                    "there_series": item.there_series,
                    "there_instances": item.there_instances,
                    "here_series": None,
                    "here_instances": None,
                    "detail": item.detail,
                    "updated_at": now,
                }
                for uid, item in chunk.items()
                if uid not in known
            ]
            if rows:
                self.connection.execute(sa.insert(m), rows)
                added += len(rows)
        return added

    def items(self, job_pk: int, states: Sequence[str] = (), after: int = 0, limit: int = 100) -> list[MigrationItem]:
        m = t.migration_item
        query = sa.select(m).where(m.c.job_pk == job_pk, m.c.pk > after)
        if states:
            query = query.where(m.c.state.in_([str(s) for s in states]))
        return [_item(row) for row in self.connection.execute(query.order_by(m.c.pk).limit(limit))]

    def items_by_uid(self, job_pk: int, study_uids: Sequence[str]) -> dict[str, MigrationItem]:
        m = t.migration_item
        out: dict[str, MigrationItem] = {}
        for start in range(0, len(study_uids), _CHUNK):
            chunk = list(study_uids[start : start + _CHUNK])
            for row in self.connection.execute(
                sa.select(m).where(m.c.job_pk == job_pk, m.c.study_instance_uid.in_(chunk))
            ):
                out[row.study_instance_uid] = _item(row)
        return out

    def update_item(self, pk: int, now: datetime, **values: Any) -> None:
        """Set columns of one item (state as an ItemState, counts, detail)."""
        allowed = {"state", "there_series", "there_instances", "here_series", "here_instances", "detail"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"not columns of a migration item: {sorted(unknown)}")
        if "state" in values:
            values["state"] = str(values["state"])
        m = t.migration_item
        self.connection.execute(sa.update(m).where(m.c.pk == pk).values(updated_at=now, **values))

    def reset_items(self, job_pk: int, states: Sequence[str], to: ItemState, now: datetime) -> int:
        m = t.migration_item
        return int(
            self.connection.execute(
                sa.update(m)
                .where(m.c.job_pk == job_pk, m.c.state.in_([str(s) for s in states]))
                .values(state=str(to), updated_at=now)
            ).rowcount
        )

    def item_counts(self, job_pk: int) -> dict[str, int]:
        """Studies per state, and the instances counted there and here in all."""
        m = t.migration_item
        counts = {str(s): 0 for s in ItemState}
        for state, n in self.connection.execute(
            sa.select(m.c.state, sa.func.count()).where(m.c.job_pk == job_pk).group_by(m.c.state)
        ):
            counts[state] = int(n)
        there, here = self.connection.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(m.c.there_instances), 0),
                sa.func.coalesce(sa.func.sum(m.c.here_instances), 0),
            ).where(m.c.job_pk == job_pk)
        ).one()
        counts["instances_there"], counts["instances_here"] = int(there), int(here)
        return counts

    def study_counts(self, study_uids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(series, instances) the archive holds for each of the studies it has."""
        s = t.study
        out: dict[str, tuple[int, int]] = {}
        for start in range(0, len(study_uids), _CHUNK):
            chunk = list(study_uids[start : start + _CHUNK])
            for row in self.connection.execute(
                sa.select(s.c.study_instance_uid, s.c.num_series, s.c.num_instances).where(
                    s.c.study_instance_uid.in_(chunk)
                )
            ):
                out[row.study_instance_uid] = (int(row.num_series), int(row.num_instances))
        return out

    def instances_present(self, sop_instance_uids: Sequence[str]) -> set[str]:
        """Those of the SOP Instance UIDs the archive holds."""
        i = t.instance
        found: set[str] = set()
        for start in range(0, len(sop_instance_uids), _CHUNK):
            chunk = list(sop_instance_uids[start : start + _CHUNK])
            found.update(
                self.connection.execute(
                    sa.select(i.c.sop_instance_uid).where(i.c.sop_instance_uid.in_(chunk))
                ).scalars()
            )
        return found

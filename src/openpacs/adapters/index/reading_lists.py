"""Index statements of reading worklists: the list of studies with their procedures' status,
priority and claim (tables ``study``, ``study_procedure``, ``requested_procedure``,
``imaging_order``, ``reading_claim``, ``reading_assignment``), and saved filters
(``reading_filter``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.adapters.index.fast import aware
from openpacs.adapters.index.orders import multi_value_has
from openpacs.domain.orders import PRIORITY_RANK
from openpacs.domain.reading_list import ReadingCriteria, ReadingItem, SavedFilter


class ReadingTable:
    """The ReadingStore port over one connection."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- the list -------------------------------------------------------------------------------

    def _select(self, columns: list[Any], criteria: ReadingCriteria, now: datetime, username: str) -> Any:
        st, sp, p, o = t.study, t.study_procedure, t.requested_procedure, t.imaging_order
        c, a, se, pa = t.reading_claim, t.reading_assignment, t.series, t.patient
        status = sa.func.coalesce(p.c.status, "completed")
        status_at = sa.func.coalesce(p.c.status_at, st.c.last_instance_at)
        priority = sa.func.coalesce(sa.func.nullif(p.c.priority, ""), o.c.priority, "")
        joined = (
            st.join(pa, pa.c.pk == st.c.patient_pk)
            .outerjoin(sp, sp.c.study_instance_uid == st.c.study_instance_uid)
            .outerjoin(p, p.c.pk == sp.c.procedure_pk)
            .outerjoin(o, o.c.pk == p.c.order_pk)
            .outerjoin(c, c.c.study_instance_uid == st.c.study_instance_uid)
        )
        select = sa.select(*columns).select_from(joined).where(status.in_(list(criteria.statuses)))
        if criteria.modalities:
            select = select.where(sa.or_(*(multi_value_has(st.c.modalities_in_study, m) for m in criteria.modalities)))
        if criteria.body_parts:
            select = select.where(
                sa.exists().where(
                    se.c.study_pk == st.c.pk, sa.func.upper(se.c.body_part_examined).in_(list(criteria.body_parts))
                )
            )
        if criteria.priorities:
            select = select.where(priority.in_(list(criteria.priorities)))
        if criteria.departments:
            select = select.where(o.c.department.in_(list(criteria.departments)))
        if criteria.worklist:
            select = select.where(
                sa.exists().where(a.c.study_instance_uid == st.c.study_instance_uid, a.c.worklist == criteria.worklist)
            )
        if criteria.min_age_minutes is not None:
            select = select.where(status_at <= now - timedelta(minutes=criteria.min_age_minutes))
        if criteria.max_age_minutes is not None:
            select = select.where(status_at >= now - timedelta(minutes=criteria.max_age_minutes))
        if criteria.unclaimed:
            select = select.where(c.c.username.is_(None))
        if criteria.mine:
            select = select.where(c.c.username == username)
        return select, status, status_at, priority

    def items(self, criteria: ReadingCriteria, now: datetime, username: str, limit: int) -> list[ReadingItem]:
        """The list: priority first (STAT, HIGH, MEDIUM, ROUTINE, LOW, none), then longest waiting."""
        st, p, o, c, pa = t.study, t.requested_procedure, t.imaging_order, t.reading_claim, t.patient
        columns = [
            st.c.pk.label("study_pk"), st.c.study_instance_uid, st.c.accession_number, st.c.study_description,
            st.c.modalities_in_study, pa.c.patient_id, pa.c.patient_name, p.c.pk.label("procedure_pk"),
            p.c.accession_number.label("procedure_accession"), o.c.department, c.c.username, c.c.claimed_at,
        ]  # fmt: skip
        select, status, status_at, priority = self._select(columns, criteria, now, username)
        rank = sa.case({k: v for k, v in PRIORITY_RANK.items() if k}, value=priority, else_=len(PRIORITY_RANK))
        # a study of several procedures shows once, with its most urgent one (row_number per study)
        nth = sa.func.row_number().over(partition_by=st.c.pk, order_by=(rank, status_at, p.c.pk))
        ranked = select.add_columns(
            status.label("status"), status_at.label("status_at"), priority.label("priority"), rank.label("rank"),
            nth.label("nth"),
        ).subquery()  # fmt: skip
        rows = self.connection.execute(
            sa.select(ranked)
            .where(ranked.c.nth == 1)
            .order_by(ranked.c.rank, ranked.c.status_at, ranked.c.study_pk)
            .limit(limit)
        )
        items: dict[str, ReadingItem] = {}
        study_pks: dict[str, int] = {}
        for row in rows:
            items[row.study_instance_uid] = ReadingItem(
                study_instance_uid=row.study_instance_uid,
                patient_id=row.patient_id,
                patient_name=row.patient_name,
                accession_number=row.procedure_accession or row.accession_number,
                study_description=row.study_description,
                modalities=row.modalities_in_study,
                status=row.status,
                status_at=aware(row.status_at) if row.status_at is not None else None,
                priority=row.priority or "",
                department=row.department or "",
                procedure_pk=None if row.procedure_pk is None else int(row.procedure_pk),
                claimed_by=row.username or "",
                claimed_at=aware(row.claimed_at) if row.claimed_at is not None else None,
            )
            study_pks[row.study_instance_uid] = int(row.study_pk)
        if items:
            se, a = t.series, t.reading_assignment
            parts = self.connection.execute(
                sa.select(se.c.study_pk, se.c.body_part_examined)
                .where(se.c.study_pk.in_(list(study_pks.values())), se.c.body_part_examined != "")
                .distinct()
            )
            by_pk = {pk: uid for uid, pk in study_pks.items()}
            for row in parts:
                items[by_pk[int(row.study_pk)]].body_parts.append(row.body_part_examined)
            assigned = self.connection.execute(
                sa.select(a.c.study_instance_uid, a.c.worklist).where(a.c.study_instance_uid.in_(list(items)))
            )
            for row in assigned:
                items[row.study_instance_uid].worklists.append(row.worklist)
        return list(items.values())

    def count(self, criteria: ReadingCriteria, now: datetime, username: str) -> int:
        select, _, _, _ = self._select([sa.func.count(sa.distinct(t.study.c.pk))], criteria, now, username)
        return int(self.connection.execute(select).scalar_one())

    def study_exists(self, study_instance_uid: str) -> bool:
        st = t.study
        found = self.connection.execute(sa.select(st.c.pk).where(st.c.study_instance_uid == study_instance_uid))
        return found.first() is not None

    # -- claims -----------------------------------------------------------------------------------

    def claim(self, study_instance_uid: str, username: str, now: datetime) -> tuple[str, datetime]:
        """Claim a study for *username* unless someone holds it: the holder and since when."""
        c = t.reading_claim
        values = {"study_instance_uid": study_instance_uid, "username": username, "claimed_at": now}
        insert = (postgresql.insert(c) if self.connection.dialect.name == "postgresql" else sqlite.insert(c)).values(
            values
        )
        self.connection.execute(insert.on_conflict_do_nothing(index_elements=["study_instance_uid"]))
        row = self.connection.execute(sa.select(c).where(c.c.study_instance_uid == study_instance_uid)).one()
        return str(row.username), aware(row.claimed_at)

    def claim_of(self, study_instance_uid: str) -> tuple[str, datetime] | None:
        c = t.reading_claim
        row = self.connection.execute(sa.select(c).where(c.c.study_instance_uid == study_instance_uid)).first()
        return None if row is None else (str(row.username), aware(row.claimed_at))

    def release(self, study_instance_uid: str) -> bool:
        c = t.reading_claim
        done = self.connection.execute(sa.delete(c).where(c.c.study_instance_uid == study_instance_uid))
        return bool(done.rowcount)

    # -- saved filters ----------------------------------------------------------------------------

    def save_filter(self, name: str, owner: str, criteria: dict[str, Any], now: datetime) -> None:
        f = t.reading_filter
        updated = self.connection.execute(
            sa.update(f).where(f.c.name == name, f.c.owner == owner).values(criteria=criteria, updated_at=now)
        )
        if not updated.rowcount:
            self.connection.execute(
                sa.insert(f).values(name=name, owner=owner, criteria=criteria, created_at=now, updated_at=now)
            )

    def filters(self, owner: str) -> list[SavedFilter]:
        """The owner's filters and the shared ones."""
        f = t.reading_filter
        rows = self.connection.execute(
            sa.select(f).where(f.c.owner.in_([owner, ""])).order_by(f.c.owner.desc(), f.c.name)
        )
        return [SavedFilter(r.name, r.owner, ReadingCriteria.from_json(dict(r.criteria)), aware(r.updated_at))
                for r in rows]  # fmt: skip

    def delete_filter(self, name: str, owner: str) -> bool:
        f = t.reading_filter
        return bool(self.connection.execute(sa.delete(f).where(f.c.name == name, f.c.owner == owner)).rowcount)

"""Removing studies, series and instances from the index (the admin's delete)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from openpacs.adapters.index import tables as t
from openpacs.domain.records import BlobRef
from openpacs.domain.tags import Level


@dataclass
class Removed:
    """What a removal took out of the index."""

    instances: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    blobs: list[BlobRef] = field(default_factory=list)


def remove(connection: Connection, level: Level, uid: str) -> Removed:
    """Delete a study, series or instance with what it contains; aggregates are recomputed."""
    i, se, st, loc = t.instance, t.series, t.study, t.location
    column = {
        Level.STUDY: st.c.study_instance_uid,
        Level.SERIES: se.c.series_instance_uid,
        Level.IMAGE: i.c.sop_instance_uid,
    }[level]
    rows = connection.execute(
        sa.select(
            i.c.pk,
            i.c.sop_instance_uid,
            se.c.pk.label("series_pk"),
            st.c.pk.label("study_pk"),
            st.c.patient_pk,
            loc.c.store,
            loc.c.key,
            loc.c.size,
        )
        .select_from(
            i.join(se, se.c.pk == i.c.series_pk)
            .join(st, st.c.pk == se.c.study_pk)
            .outerjoin(loc, loc.c.instance_pk == i.c.pk)
        )
        .where(column == uid)
    ).all()
    removed = Removed()
    if level is Level.STUDY:
        study_pks = [r[0] for r in connection.execute(sa.select(st.c.pk).where(st.c.study_instance_uid == uid))]
    elif level is Level.SERIES:
        study_pks = [r[0] for r in connection.execute(sa.select(se.c.study_pk).where(se.c.series_instance_uid == uid))]
    else:
        study_pks = sorted({r.study_pk for r in rows})
    if not study_pks:
        return removed
    patient_pks = {r[0] for r in connection.execute(sa.select(st.c.patient_pk).where(st.c.pk.in_(study_pks)))}
    instance_pks = [r.pk for r in rows]
    removed.instances = [r.sop_instance_uid for r in rows]
    removed.blobs = [BlobRef(r.store, r.key, r.size) for r in rows if r.key is not None]
    for chunk in range(0, len(instance_pks), 500):
        part = instance_pks[chunk : chunk + 500]
        connection.execute(sa.delete(loc).where(loc.c.instance_pk.in_(part)))
        connection.execute(sa.delete(i).where(i.c.pk.in_(part)))
    series_rows = connection.execute(
        sa.select(se.c.pk, se.c.series_instance_uid).where(se.c.study_pk.in_(study_pks))
    ).all()
    for series_pk, series_uid in series_rows:
        count = connection.execute(
            sa.select(sa.func.count()).select_from(i).where(i.c.series_pk == series_pk)
        ).scalar_one()
        if count == 0:
            connection.execute(sa.delete(t.series_request).where(t.series_request.c.series_pk == series_pk))
            connection.execute(sa.delete(se).where(se.c.pk == series_pk))
            removed.series.append(series_uid)
    for study_pk in study_pks:
        _recount_study(connection, study_pk, removed)
    for patient_pk in patient_pks:
        recount_patient(connection, patient_pk)
    return removed


def recount_visible(connection: Connection, study_pks: Iterable[int]) -> None:
    """Recompute the aggregates of studies, their series and patients from the visible
    instances (rejected and soft-deleted ones are not counted)."""
    patient_pks = set()
    for study_pk in sorted(set(study_pks)):
        _recount_study(connection, study_pk, Removed())
        patient_pks.add(
            connection.execute(sa.select(t.study.c.patient_pk).where(t.study.c.pk == study_pk)).scalar_one()
        )
    for patient_pk in sorted(patient_pks):
        recount_patient(connection, patient_pk)


def _recount_study(connection: Connection, study_pk: int, removed: Removed) -> None:
    i, se, st, loc = t.instance, t.series, t.study, t.location
    series_count = connection.execute(
        sa.select(sa.func.count()).select_from(se).where(se.c.study_pk == study_pk)
    ).scalar_one()
    uid = connection.execute(sa.select(st.c.study_instance_uid).where(st.c.pk == study_pk)).scalar_one()
    if series_count == 0:
        connection.execute(sa.delete(st).where(st.c.pk == study_pk))
        removed.studies.append(uid)
        return
    # the aggregates count what clinical users see: rejected and soft-deleted instances are left out
    visible = i.c.rejection.is_(None)
    per_series = connection.execute(
        sa.select(se.c.pk, sa.func.count(i.c.pk))
        .select_from(se.outerjoin(i, (i.c.series_pk == se.c.pk) & visible))
        .where(se.c.study_pk == study_pk)
        .group_by(se.c.pk)
    ).all()
    for series_pk, series_instances in per_series:
        connection.execute(sa.update(se).where(se.c.pk == series_pk).values(num_instances=series_instances))
    instances = se.join(i, i.c.series_pk == se.c.pk)
    count, size = connection.execute(
        sa.select(sa.func.count(i.c.pk), sa.func.coalesce(sa.func.sum(loc.c.size), 0))
        .select_from(instances.outerjoin(loc, loc.c.instance_pk == i.c.pk))
        .where(se.c.study_pk == study_pk, visible)
    ).one()
    modalities = sorted(
        {
            m
            for (m,) in connection.execute(
                sa.select(se.c.modality).where(se.c.study_pk == study_pk, se.c.num_instances > 0)
            )
            if m
        }
    )
    sop_classes = sorted(
        {
            c
            for (c,) in connection.execute(
                sa.select(i.c.sop_class_uid).select_from(instances).where(se.c.study_pk == study_pk, visible).distinct()
            )
        }
    )
    series_count = sum(1 for _, n in per_series if n)
    connection.execute(
        sa.update(st)
        .where(st.c.pk == study_pk)
        .values(
            num_series=series_count,
            num_instances=count,
            size_bytes=size,
            modalities_in_study="\\".join(modalities),
            sop_classes_in_study="\\".join(sop_classes),
        )
    )


def recount_patient(connection: Connection, patient_pk: int) -> None:
    st, p = t.study, t.patient
    studies, series, instances = connection.execute(
        sa.select(
            sa.func.count(st.c.pk),
            sa.func.coalesce(sa.func.sum(st.c.num_series), 0),
            sa.func.coalesce(sa.func.sum(st.c.num_instances), 0),
        ).where(st.c.patient_pk == patient_pk, st.c.num_instances > 0)
    ).one()
    connection.execute(
        sa.update(p).where(p.c.pk == patient_pk).values(num_studies=studies, num_series=series, num_instances=instances)
    )

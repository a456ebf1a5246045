"""Checking and applying the edits of a correction (``domain/qa.py``) inside one unit of work.

An operation's edits are first simulated in order against the index (each must find its
object in the state it expects: nothing is changed under somebody else's feet), then
applied. Runs of edits of one kind on instances (a series of 2,000 images renamed) are
read and written in bulk, and the aggregates of the studies they touch recounted once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from openpacs.domain import dicom_json as dj
from openpacs.domain.qa import Edit, EditKind, Operation, StateChanged
from openpacs.domain.records import Issuer, PatientIdentifier
from openpacs.domain.tags import Level, keyword_of
from openpacs.ports.index import ChangeRecord, IndexSession, InstancePlace, PatientRow

_BULK = (EditKind.UID, EditKind.PARENT, EditKind.ATTRIBUTE, EditKind.HIDDEN)


def _image_uids(edits: Iterable[Edit]) -> set[str]:
    uids: set[str] = set()
    for edit in edits:
        if edit.target["level"] == "IMAGE":
            uids.add(edit.target["uid"])
            if edit.kind is EditKind.UID:
                uids.update((edit.old, edit.new))
    return uids


class _Simulation:
    """The index as the edits leave it, read lazily (instances prefetched in bulk)."""

    def __init__(self, session: IndexSession, edits: list[Edit]) -> None:
        self.session = session
        self.places: dict[str, InstancePlace] = session.reallocation.places(sorted(_image_uids(edits)))
        self.names: dict[str, str] = {}  # a name given by an earlier edit -> the name in the index
        self.created: dict[str, bool] = {}
        self.state: dict[tuple[str, str, str], Any] = {}

    def db(self, uid: str) -> str:
        return self.names.get(uid, uid)

    def current(self, edit: Edit) -> Any:
        slot = (edit.object_key(), str(edit.kind), edit.key)
        if slot in self.state:
            return self.state[slot]
        return self._read(edit)

    def record(self, edit: Edit) -> None:
        self.state[(edit.object_key(), str(edit.kind), edit.key)] = edit.new
        if edit.kind is EditKind.UID:
            self.names[edit.new] = self.names.pop(edit.old, edit.old)
            self.state[(f"{edit.target['level']}:{edit.new}", str(EditKind.UID), "")] = edit.new
        elif edit.kind is EditKind.CREATED:
            self.created[edit.target["uid"]] = edit.new is not None

    def _read(self, edit: Edit) -> Any:
        session, target = self.session, edit.target
        level = target["level"]
        if edit.kind is EditKind.CONFLICT:
            found = session.conflict(int(target["pk"]))
            if found is None:
                raise StateChanged(f"identity conflict {target['pk']} no longer exists")
            return None if found[1] is None else "resolved"
        if level == "IMAGE":
            uid = edit.old if edit.kind is EditKind.UID else target["uid"]
            place = self.places.get(self.db(uid))
            if edit.kind is EditKind.UID:
                return None if place is None else uid
            if place is None:
                raise StateChanged(f"instance {target['uid']} no longer exists")
            if edit.kind is EditKind.HIDDEN:
                return place.hidden
            if edit.kind is EditKind.PARENT:
                return self._simulated_name(place.series_instance_uid)
            return place.attrs.get(edit.key)
        if edit.kind is EditKind.CREATED:
            uid = target["uid"]
            if uid in self.created:
                return self.created[uid] or None
            row = session.study(uid) if level == "STUDY" else session.series(uid)
            return None if row is None else True
        if edit.kind is EditKind.ALIAS:
            alias = session.reallocation.alias_of(target["uid"])
            return None if alias is None else alias[1]
        if level == "SERIES" and edit.kind in (EditKind.UID, EditKind.PARENT):
            uid = edit.old if edit.kind is EditKind.UID else target["uid"]
            if edit.kind is EditKind.UID:
                return uid if session.series(self.db(uid)) is not None else None
            parent = session.reallocation.series_study(self.db(uid))
            if parent is None:
                raise StateChanged(f"series {uid} no longer exists")
            return parent
        if edit.kind is EditKind.STUDY_PATIENT:
            study = session.study(target["uid"])
            if study is None:
                raise StateChanged(f"study {target['uid']} no longer exists")
            return study.patient_pk
        if level == "PATIENT":
            patient = session.patient(int(target["pk"]))
            if edit.kind is EditKind.MERGED_INTO:
                return patient.merged_into_pk
            if edit.kind is EditKind.IDENTIFIER:
                # the identifier the edit replaces must still be the patient's
                return edit.old if edit.old is None or has_identifier(patient, edit.old) else "not held"
            return patient.attrs.get(edit.key)
        uid = self.db(target["uid"])
        row = session.study(uid) if level == "STUDY" else session.series(uid)
        if row is None:
            raise StateChanged(f"{level.lower()} {target['uid']} no longer exists")
        return row.attrs.get(edit.key)

    def _simulated_name(self, db_uid: str) -> str:
        for name, db in self.names.items():
            if db == db_uid:
                return name
        return db_uid


def check(session: IndexSession, edits: list[Edit]) -> None:
    """Every edit finds its object in the state it expects (simulated in order)."""
    simulation = _Simulation(session, edits)
    for edit in edits:
        current = simulation.current(edit)
        if not _same(edit.kind, current, edit.old):
            what = keyword_of(int(edit.key, 16)) if edit.key else str(edit.kind)
            raise StateChanged(f"{edit.object_key()} has changed since: its {what} is no longer {edit.old!r}")
        simulation.record(edit)


def _runs(edits: list[Edit]) -> Iterator[list[Edit]]:
    """Consecutive edits of one bulk kind on instances, or single edits."""
    run: list[Edit] = []
    for edit in edits:
        bulk = edit.target["level"] == "IMAGE" and edit.kind in _BULK
        if run and (
            not bulk or edit.kind is not run[0].kind or (edit.kind is EditKind.PARENT and edit.new != run[0].new)
        ):
            yield run
            run = []
        if bulk:
            run.append(edit)
        else:
            yield [edit]
    if run:
        yield run


def apply(session: IndexSession, edits: list[Edit], now: datetime) -> None:
    """Apply checked edits in order; the studies whose content moved are recounted at the end."""
    moved: set[str] = set()
    store = session.reallocation
    for run in _runs(edits):
        edit = run[0]
        level = edit.target["level"]
        if level == "IMAGE" and edit.kind is EditKind.UID:
            store.rename_instances([(e.old, e.new) for e in run], now)
        elif level == "IMAGE" and edit.kind is EditKind.PARENT:
            for series_uid in {e.old for e in run} | {edit.new}:
                study = store.series_study(series_uid)
                if study is not None:
                    moved.add(study)
            store.set_instances_series([e.target["uid"] for e in run], edit.new)
        elif level == "IMAGE" and edit.kind is EditKind.ATTRIBUTE:
            places = store.places([e.target["uid"] for e in run])
            own: dict[str, dict[str, Any]] = {uid: dict(p.attrs) for uid, p in places.items()}
            for e in run:
                _assign(own[e.target["uid"]], e.key, e.new)
            store.set_instance_attrs(own.items())
        elif edit.kind is EditKind.HIDDEN:
            for state in {e.new for e in run}:
                session.set_hidden([e.target["uid"] for e in run if e.new == state], state, now)
        else:
            _apply_one(session, edit, now, moved)
    if moved:
        store.recount(moved)


def _apply_one(session: IndexSession, edit: Edit, now: datetime, moved: set[str]) -> None:
    target, level = edit.target, edit.target["level"]
    store = session.reallocation
    if edit.kind is EditKind.CONFLICT:
        session.set_conflict_resolved(int(target["pk"]), now if edit.new else None)
    elif edit.kind is EditKind.UID:
        store.rename_series(edit.old, edit.new, now)
    elif edit.kind is EditKind.PARENT:
        moved.update((edit.old, edit.new))
        store.set_series_study(target["uid"], edit.new, now)
    elif edit.kind is EditKind.CREATED:
        if edit.new is None:
            if not store.remove_if_empty(level, target["uid"]):
                raise StateChanged(f"{level.lower()} {target['uid']} is no longer empty: it cannot be removed")
        elif level == "STUDY":
            store.create_study_like(int(edit.new["patient_pk"]), edit.new["attrs"], now)
        else:
            store.create_series_like(edit.new["template"], edit.new["study"], edit.new["attrs"], now)
    elif edit.kind is EditKind.ALIAS:
        store.set_alias(level, target["uid"], edit.new, now)
    elif edit.kind is EditKind.STUDY_PATIENT:
        study = session.study(target["uid"])
        assert study is not None  # checked
        session.set_study_patient(study.pk, int(edit.new), now)
    elif edit.kind is EditKind.MERGED_INTO:
        session.set_merged_into(int(target["pk"]), edit.new, now)
    elif edit.kind is EditKind.IDENTIFIER:
        session.replace_identifier(int(target["pk"]), id_from_json(edit.old), id_from_json(edit.new), now)
    elif level == "PATIENT":
        patient = session.patient(int(target["pk"]))
        session.set_patient_attrs(patient.pk, assigned(patient.attrs, edit.key, edit.new), now)
    elif level == "STUDY":
        study = session.study(target["uid"])
        assert study is not None
        session.set_study_attrs(study.pk, assigned(study.attrs, edit.key, edit.new), now)
    else:
        series = session.series(target["uid"])
        assert series is not None
        session.set_series_attrs(series.pk, assigned(series.attrs, edit.key, edit.new), now)


def changes(operation: Operation) -> Iterator[ChangeRecord]:
    """The change-feed rows of an operation (one per object)."""
    seen = set()

    def once(record: ChangeRecord) -> Iterator[ChangeRecord]:
        if record not in seen:
            seen.add(record)
            yield record

    for edit in operation.edits:
        target = edit.target
        if edit.kind is EditKind.CONFLICT:
            continue  # the inbox is not a resource of the change feed
        if edit.kind is EditKind.HIDDEN:
            change = "instance_hidden" if edit.new is not None else "instance_shown"
            yield from once(ChangeRecord(change, Level.IMAGE, str(target["uid"])))
        elif edit.kind is EditKind.UID:
            level = Level.IMAGE if target["level"] == "IMAGE" else Level.SERIES
            noun = "instance" if level is Level.IMAGE else "series"
            yield from once(ChangeRecord(f"{noun}_reallocated", level, str(edit.new)))
        elif edit.kind is EditKind.PARENT:
            for uid in (edit.old, edit.new):
                level = Level.STUDY if target["level"] == "SERIES" else Level.SERIES
                yield from once(ChangeRecord(f"{str(level).lower()}_updated", level, str(uid)))
        elif edit.kind is EditKind.CREATED:
            level = Level.STUDY if target["level"] == "STUDY" else Level.SERIES
            change = f"{str(level).lower()}_{'created' if edit.new is not None else 'deleted'}"
            yield from once(ChangeRecord(change, level, str(target["uid"])))
        elif target["level"] == "PATIENT":
            yield from once(ChangeRecord("patient_updated", Level.PATIENT, str(target["pk"])))
        elif target["level"] == "IMAGE":
            yield from once(ChangeRecord("instance_updated", Level.IMAGE, str(target["uid"])))
        elif target["level"] == "STUDY":
            yield from once(ChangeRecord("study_updated", Level.STUDY, str(target["uid"])))
        else:
            yield from once(ChangeRecord("series_updated", Level.SERIES, str(target["uid"])))
        if edit.kind is EditKind.STUDY_PATIENT:
            for pk in (edit.old, edit.new):
                yield from once(ChangeRecord("patient_updated", Level.PATIENT, str(pk)))


def _assign(attrs: dict[str, Any], tag: str, element: dict[str, Any] | None) -> None:
    if element is None:
        attrs.pop(tag, None)
    else:
        attrs[tag] = element


def assigned(attrs: dict[str, Any], tag: str, element: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(attrs)
    _assign(out, tag, element)
    return out


def _same(kind: EditKind, current: Any, expected: Any) -> bool:
    if kind is EditKind.ATTRIBUTE:
        return dj.element_equal(current, expected)
    if kind is EditKind.CREATED:
        return (current is None) == (expected is None)
    return bool(current == expected)


def id_from_json(data: dict[str, str] | None) -> PatientIdentifier | None:
    if data is None:
        return None
    return PatientIdentifier(
        data["value"], Issuer(data.get("issuer", ""), data.get("universal_id", ""), data.get("universal_id_type", ""))
    )


def has_identifier(patient: PatientRow, data: dict[str, str] | None) -> bool:
    wanted = id_from_json(data)
    if wanted is None:
        return False
    return any(wanted.same_as(i) for i in patient.identifiers or [])

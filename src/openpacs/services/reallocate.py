"""Plans of the reallocations that change UIDs (ARCHITECTURE.md section 3, UID policy).

Moving a series into another study gives it a new Series Instance UID and its instances
new SOP Instance UIDs; moving instances into any other series gives them new SOP Instance
UIDs. Nothing is copied: the rows are renamed and re-parented, the old UIDs retired in
``uid_alias`` (and rejected with 113038 by a rejection note, for peers), and the objects
that reference them (GSPS, KOS, SR...) get the references rewritten in their own
attribute set, so that every outbound path shows the new identity.

A plan is a list of reversible edits (``domain/qa.py``) in this order: references first
(named by their current UIDs), then the new study or series, then the moves, then the
renamings; its inverse (undo) runs them backwards.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import generate_uid

from openpacs.domain.errors import Conflict, InvalidQuery, NotFound
from openpacs.domain.qa import NOTE, REJECTION_CODES, Edit, EditKind, Operation, OperationKind, StateChanged
from openpacs.domain.records import Actor, Origin
from openpacs.domain.tags import Level
from openpacs.ports.index import IndexSession, InstancePlace
from openpacs.services.iocm import REJECTION_TRANSPORT, rejection_code, rejection_note_of
from openpacs.services.qa_runner import QaRunner

#: what a build function gives: the operation's parameters and the (level, name) it is about
Built = tuple[dict[str, Any], tuple[str, str]]

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"


@dataclass
class Plan:
    """The edits of a reallocation, and what a reader checks before confirming."""

    edits: list[Edit] = field(default_factory=list)
    uids: list[dict[str, str]] = field(default_factory=list)  # {"level", "old", "new"}
    #: the visible instances whose old identity is retired, by study: they get a 113038 note
    retired: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    created: list[dict[str, str]] = field(default_factory=list)
    patients: set[int] = field(default_factory=set)

    def summary(self, level: str, name: str) -> dict[str, Any]:
        renamed = [u for u in self.uids if u["level"] == "IMAGE"]
        return {
            "level": level,
            "name": name,
            "affected": {
                "series": len({u["old"] for u in self.uids if u["level"] == "SERIES"})
                + len({c["uid"] for c in self.created if c["level"] == "SERIES"}),
                "instances": len(renamed),
            },
            "created": self.created,
            "uids": self.uids[:1000],
            "references_rewritten": self.references[:1000],
            "changes": [],
        }


class Planner:
    """Builds reallocation plans inside one unit of work."""

    def __init__(
        self, session: IndexSession, new_uid: Callable[[], str] = generate_uid, notes: Collection[str] = ()
    ) -> None:
        self.session = session
        self.notes = set(notes)  # rejection notes this operation stored (not hidden yet)
        self.store = session.reallocation
        self.new_uid = new_uid
        self.plan = Plan()
        self._moves: list[Edit] = []
        self._renames: list[Edit] = []
        self._creations: list[Edit] = []
        self._extra: list[Edit] = []
        self._refs_map: dict[str, str] = {}

    # -- what the operations are made of -------------------------------------------------

    def study_of_series(self, series_uid: str) -> str:
        study = self.store.series_study(series_uid)
        if study is None:
            raise NotFound(f"no series {series_uid}")
        return study

    def movable_series(self, study_uid: str) -> list[str]:
        """The series of a study, but those holding rejection notes (they stay where they are)."""
        out = []
        for uid in self.store.series_of_study(study_uid):
            members = self.store.places(self.store.series_members(uid))
            if not any(p.hidden == NOTE or p.sop_instance_uid in self.notes for p in members.values()):
                out.append(uid)
        return out

    def existing_study(self, uid: str) -> Any:
        study = self.session.study(uid)
        if study is None:
            raise NotFound(f"no study {uid}")
        self.plan.patients.add(study.patient_pk)
        return study

    def move_series(self, series_uid: str, to_study: str) -> None:
        """The series into another study: a new Series Instance UID, new SOP Instance UIDs."""
        source = self.study_of_series(series_uid)
        if source == to_study:
            raise InvalidQuery(f"series {series_uid} is already in study {to_study}")
        members = self.store.places(self.store.series_members(series_uid))
        if any(p.hidden == NOTE for p in members.values()):
            raise InvalidQuery(f"series {series_uid} holds rejection notes: they stay with the study they reject")
        self.existing_study(source)
        new = self.new_uid()
        target = {"level": "SERIES", "uid": series_uid}
        self._moves.append(Edit(EditKind.PARENT, target, source, to_study))
        self._renames.append(Edit(EditKind.UID, target, series_uid, new))
        self.plan.uids.append({"level": "SERIES", "old": series_uid, "new": new})
        self._refs_map[series_uid] = new
        self._rename_instances(members.values())

    def new_study_like(self, template: Any) -> str:
        """A new study of the same patient with the attributes of *template* (a study row)."""
        uid = self.new_uid()
        attrs = {**template.attrs, STUDY_UID: {"vr": "UI", "Value": [uid]}}
        definition = {"patient_pk": template.patient_pk, "attrs": attrs}
        self._creations.append(Edit(EditKind.CREATED, {"level": "STUDY", "uid": uid}, None, definition))
        self.plan.created.append({"level": "STUDY", "uid": uid})
        return uid

    def new_series_like(self, template_uid: str, study_uid: str) -> str:
        """A new series in *study_uid* with the attributes of series *template_uid*."""
        row = self.session.series(template_uid)
        if row is None:
            raise NotFound(f"no series {template_uid}")
        uid = self.new_uid()
        attrs = {**row.attrs, SERIES_UID: {"vr": "UI", "Value": [uid]}}
        definition = {"template": template_uid, "study": study_uid, "attrs": attrs}
        self._creations.append(Edit(EditKind.CREATED, {"level": "SERIES", "uid": uid}, None, definition))
        self.plan.created.append({"level": "SERIES", "uid": uid, "study": study_uid})
        return uid

    def instances(self, uids: Sequence[str]) -> dict[str, InstancePlace]:
        if not uids:
            raise InvalidQuery("name at least one instance")
        places = self.store.places(list(dict.fromkeys(uids)))
        missing = [u for u in uids if u not in places]
        if missing:
            raise NotFound(
                f"no instance {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        notes = [u for u, p in places.items() if p.hidden == NOTE]
        if notes:
            raise InvalidQuery(f"instance {notes[0]} is a rejection note: it stays with the study it rejects")
        for place in places.values():
            self.plan.patients.add(place.patient_pk)
        return places

    def move_instances(self, places: Collection[InstancePlace], to_series: str) -> None:
        """Instances into another series: new SOP Instance UIDs."""
        for place in places:
            if place.series_instance_uid == to_series:
                raise InvalidQuery(f"instance {place.sop_instance_uid} is already in series {to_series}")
            target = {"level": "IMAGE", "uid": place.sop_instance_uid}
            self._moves.append(Edit(EditKind.PARENT, target, place.series_instance_uid, to_series))
        self._rename_instances(places)

    def alias_study(self, old: str, new: str) -> None:
        """What arrives later for study *old* lands in *new* (a merge of studies)."""
        self._extra.append(Edit(EditKind.ALIAS, {"level": "STUDY", "uid": old}, None, new))
        self._refs_map[old] = new

    def _rename_instances(self, places: Collection[InstancePlace]) -> None:
        for place in places:
            new = self.new_uid()
            old = place.sop_instance_uid
            self._renames.append(Edit(EditKind.UID, {"level": "IMAGE", "uid": old}, old, new))
            self.plan.uids.append({"level": "IMAGE", "old": old, "new": new})
            self._refs_map[old] = new
            if place.hidden is None:
                reference = (place.series_instance_uid, place.sop_class_uid, old)
                self.plan.retired.setdefault(place.study_instance_uid, []).append(reference)

    # -- the plan -------------------------------------------------------------------------

    def finish(self, *, references: bool = True) -> Plan:
        """References first, then creations, moves, renamings and aliases."""
        references_edits = self._reference_edits() if references else []
        self.plan.edits = references_edits + self._creations + self._moves + self._renames + self._extra
        return self.plan

    def _reference_edits(self) -> list[Edit]:
        """Objects naming a retired UID inside a sequence get it rewritten in their own set."""
        renamed = self._refs_map
        if not renamed or not self.plan.patients:
            return []
        found = self.store.referencing(self.plan.patients, renamed.keys())
        own = self.store.places([uid for uid, _ in found])
        edits = []
        for uid, header in found:
            place = own.get(uid)
            if place is None or place.hidden == NOTE or rejection_code(place.sop_class_uid, header) is not None:
                continue  # rejection notes keep naming what they rejected
            touched = False
            for key, element in header.items():
                if element.get("vr") != "SQ":
                    continue
                rewritten = _rewrite(element, renamed)
                if rewritten is not element:
                    edits.append(
                        Edit(EditKind.ATTRIBUTE, {"level": "IMAGE", "uid": uid}, place.attrs.get(key), rewritten, key)
                    )
                    touched = True
            if touched:
                self.plan.references.append(uid)
        return edits


def _rewrite(element: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """*element* with every UID of *renamed* inside it replaced (the same object if none)."""
    if element.get("vr") == "UI" and element.get("Value"):
        values = element["Value"]
        new = [renamed.get(v, v) if isinstance(v, str) else v for v in values]
        return element if new == values else {**element, "Value": new}
    if element.get("vr") == "SQ" and element.get("Value"):
        items = element["Value"]
        changed = False
        out = []
        for item in items:
            new_item = {}
            for key, sub in item.items():
                rewritten = _rewrite(sub, renamed) if isinstance(sub, dict) else sub
                changed = changed or rewritten is not sub
                new_item[key] = rewritten
            out.append(new_item)
        return {**element, "Value": out} if changed else element
    return element


def check_study_target(session: IndexSession, uid: str) -> None:
    """A destination study must exist and not be merged into another."""
    if session.study(uid) is None:
        raise NotFound(f"no study {uid}")
    alias = session.reallocation.alias_of(uid)
    if alias is not None:
        raise Conflict(f"study {uid} was merged into study {alias[1]}: name that one")


class ReallocationOps(QaRunner):
    """merge-studies, split-study, move-series and move-instances (new UIDs, old ones rejected)."""

    def move_series(
        self,
        series_uid: str,
        to_study: str,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Series reallocation: the series goes into *to_study* under a new Series Instance UID,
        its instances under new SOP Instance UIDs; the old ones are rejected (113038)."""

        def build(planner: Planner) -> Built:
            check_study_target(planner.session, to_study)
            planner.existing_study(to_study)
            planner.move_series(series_uid, to_study)
            return {"series": series_uid, "to_study": to_study}, ("SERIES", series_uid)

        return self._reallocate(OperationKind.MOVE_SERIES, build, actor, reason, dry_run, resolves)

    def merge_studies(
        self,
        source: str,
        target: str,
        actor: Actor,
        reason: str,
        *,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Every series of *source* into *target* (new UIDs); what arrives later for *source*
        lands in *target*. The source keeps only its rejection notes."""

        def build(planner: Planner) -> Built:
            if source == target:
                raise InvalidQuery("the source and the target are the same study")
            planner.existing_study(source)
            check_study_target(planner.session, target)
            planner.existing_study(target)
            movable = planner.movable_series(source)
            if not movable:
                raise InvalidQuery(f"study {source} holds nothing to merge")
            for uid in movable:
                planner.move_series(uid, target)
            planner.alias_study(source, target)
            return {"source": source, "target": target}, ("STUDY", source)

        return self._reallocate(OperationKind.MERGE_STUDIES, build, actor, reason, dry_run, resolves)

    def split_study(
        self,
        study_uid: str,
        actor: Actor,
        reason: str,
        *,
        series: Sequence[str] = (),
        instances: Sequence[str] = (),
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Series (or instances) of a study into a new study of the same patient (new UIDs)."""
        if bool(series) == bool(instances):
            raise InvalidQuery("name either series or instances to split off")

        def build(planner: Planner) -> Built:
            study = planner.existing_study(study_uid)
            if series:
                present = planner.movable_series(study_uid)
                stray = [s for s in series if s not in present]
                if stray:
                    raise InvalidQuery(f"series {stray[0]} is not in study {study_uid}")
                if set(present) <= set(series):
                    raise InvalidQuery("splitting off every series would leave the study empty: name fewer")
                new_study = planner.new_study_like(study)
                for uid in dict.fromkeys(series):
                    planner.move_series(uid, new_study)
                params: dict[str, Any] = {"study": study_uid, "series": list(series), "new_study": new_study}
            else:
                places = planner.instances(instances)
                stray = [p.sop_instance_uid for p in places.values() if p.study_instance_uid != study_uid]
                if stray:
                    raise InvalidQuery(f"instance {stray[0]} is not in study {study_uid}")
                new_study = planner.new_study_like(study)
                by_series: dict[str, list[InstancePlace]] = {}
                for place in places.values():
                    by_series.setdefault(place.series_instance_uid, []).append(place)
                for source_series, members in by_series.items():
                    planner.move_instances(members, planner.new_series_like(source_series, new_study))
                params = {"study": study_uid, "instances": list(instances), "new_study": new_study}
            return params, ("STUDY", study_uid)

        return self._reallocate(OperationKind.SPLIT_STUDY, build, actor, reason, dry_run, resolves)

    def move_instances(
        self,
        sop_instance_uids: Sequence[str],
        actor: Actor,
        reason: str,
        *,
        to_series: str | None = None,
        to_new_series: bool = False,
        dry_run: bool = False,
        resolves: Sequence[int] = (),
    ) -> Operation:
        """Image reallocation: instances into another series (of this study or another), or
        into a new series of their study, under new SOP Instance UIDs."""
        if (to_series is None) == (not to_new_series):
            raise InvalidQuery("name the destination: a series, or a new series")

        def build(planner: Planner) -> Built:
            places = planner.instances(sop_instance_uids)
            if to_series is not None:
                check_study_target(planner.session, planner.study_of_series(to_series))
                planner.existing_study(planner.study_of_series(to_series))
                destination = to_series
            else:
                studies = {p.study_instance_uid for p in places.values()}
                if len(studies) > 1:
                    raise InvalidQuery("a new series is made in one study: the instances named are in several")
                first = next(iter(places.values()))
                destination = planner.new_series_like(first.series_instance_uid, first.study_instance_uid)
            planner.move_instances(list(places.values()), destination)
            params = {"instances": list(sop_instance_uids), "to_series": destination, "new_series": to_new_series}
            return params, ("IMAGE", f"{len(places)} instances")

        return self._reallocate(OperationKind.MOVE_INSTANCES, build, actor, reason, dry_run, resolves)

    def _reallocate(
        self,
        kind: OperationKind,
        build: Callable[[Planner], Built],
        actor: Actor,
        reason: str,
        dry_run: bool,
        resolves: Sequence[int],
    ) -> Operation:
        """Plan, store the 113038 rejection notes of the retired identities (one per study,
        before the operation's transaction, withdrawn if it fails), then run the operation."""

        def plan_operation(session: IndexSession, notes: dict[str, tuple[str, list[str]]] | None) -> Operation:
            planner = Planner(session, notes=[note for note, _ in (notes or {}).values()])
            params, (level, name) = build(planner)
            plan = planner.finish()
            summary = plan.summary(level, name)
            if notes is None:
                summary["rejection_notes"] = [
                    {"study": study, "code": "113038", "instances": len(uids), "sop_instance_uid": None}
                    for study, uids in plan.retired.items()
                ]
            else:
                if {s: sorted(r[2] for r in refs) for s, refs in plan.retired.items()} != {
                    s: n[1] for s, n in notes.items()
                }:
                    raise StateChanged("the objects changed while the operation was prepared: run it again")
                session.set_hidden([note for note, _ in notes.values()], NOTE, self._clock())
                summary["rejection_notes"] = [
                    {"study": study, "code": "113038", "instances": len(uids), "sop_instance_uid": note}
                    for study, (note, uids) in notes.items()
                ]
            return Operation(kind, reason, params, plan.edits, summary)

        if dry_run:
            return self._run(lambda session: plan_operation(session, None), actor, True, resolves)
        if not reason.strip():
            raise InvalidQuery("a reason is required")
        with self._index.session() as session:
            planner = Planner(session)
            build(planner)
            retired = planner.finish(references=False).retired
            # one instance per study gives the note its patient and study attributes
            firsts = {study: session.stored_instances(Level.IMAGE, [refs[0][2]])[0] for study, refs in retired.items()}
        notes: dict[str, tuple[str, list[str]]] = {}
        try:
            for study, refs in retired.items():
                note, data = rejection_note_of(firsts[study], refs, REJECTION_CODES["113038"], self._clock())
                self._ingest.store(data, Origin(actor=actor, transport=REJECTION_TRANSPORT, calling_ae=""))
                notes[study] = (note, sorted(r[2] for r in refs))
            return self._run(lambda session: plan_operation(session, notes), actor, False, resolves)
        except BaseException:
            for note, _ in notes.values():
                self._withdraw(note)
            raise

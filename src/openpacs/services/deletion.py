"""DeletionService: the administrator's delete of studies, series and instances.

One transaction removes the index rows, recomputes the aggregates, writes the change
feed and the audit record, and queues the files for deletion after the grace period
(a retrieval may still be reading them). Issue 4 turns this into a restorable soft
delete with a purge; this is the purge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.records import Actor
from openpacs.domain.tags import Level
from openpacs.domain.workflow import committed_refusal
from openpacs.ports.index import AuditRecord, ChangeRecord, Index


@dataclass(frozen=True)
class Deleted:
    """What a delete removed."""

    studies: int
    series: int
    instances: int


class DeletionService:
    """Deletes resources; thread-safe."""

    def __init__(self, index: Index, *, grace_seconds: float, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._grace = timedelta(seconds=grace_seconds)
        self._clock = clock

    def delete(self, level: Level, uid: str, actor: Actor, reason: str = "", *, force: bool = False) -> Deleted:
        """Delete a study, series or instance (raises NotFound). Instances we committed to
        (storage commitment) are deleted only with *force* (Conflict otherwise)."""
        now = self._clock()
        with self._index.session(write=True) as session:
            committed = session.workflow.committed_to([s.sop_instance_uid for s in session.instance_states(level, uid)])
            if committed and not force:
                raise Conflict(committed_refusal(committed, str(level).lower()))
            removed = session.remove(level, uid)
            if not removed.instances and not removed.studies and not removed.series:
                raise NotFound(f"no {str(level).lower()} {uid}")
            session.add_pending_deletions(
                [(b, f"deleted ({level} {uid})") for b in removed.blobs], now + self._grace, now
            )
            changes = [ChangeRecord("instance_deleted", Level.IMAGE, u) for u in removed.instances]
            changes += [ChangeRecord("series_deleted", Level.SERIES, u) for u in removed.series]
            changes += [ChangeRecord("study_deleted", Level.STUDY, u) for u in removed.studies]
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "delete",
                        "success",
                        [{"level": str(level), "uid": uid}],
                        {
                            "reason": reason,
                            "instances": len(removed.instances),
                            "series": len(removed.series),
                            "studies": len(removed.studies),
                            "committed_to": sorted({ae for aes in committed.values() for ae in aes}),
                        },
                    )
                ]
            )
            session.add_changes(changes, now)
        return Deleted(len(removed.studies), len(removed.series), len(removed.instances))

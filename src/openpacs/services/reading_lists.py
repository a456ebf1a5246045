"""Reading worklists for radiologists (issue 7): saved filters, the lists with their unread
counts, and claim/release of a study (one reader at a time, visible to the others). Every
claim, release and filter change is audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.reading_list import UNREAD, ReadingCriteria, ReadingItem, SavedFilter, check_filter_name
from openpacs.domain.records import Actor
from openpacs.ports.index import AuditRecord, Index, IndexSession


class ReadingService:
    """Reading lists, filters and claims; thread-safe."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._clock = clock

    def items(self, criteria: ReadingCriteria, username: str, limit: int = 200) -> list[ReadingItem]:
        with self._index.session() as session:
            return session.reading.items(criteria, self._clock(), username, max(1, min(limit, 1000)))

    def criteria_of(self, name: str, username: str) -> ReadingCriteria:
        """A saved filter's criteria: the user's own of that name, else the shared one."""
        return self.saved_filter(name, username).criteria

    def saved_filter(self, name: str, username: str) -> SavedFilter:
        """The user's own filter of that name, else the shared one."""
        with self._index.session() as session:
            found = [f for f in session.reading.filters(username) if f.name == name]
        if not found:
            raise NotFound(f"no reading filter named {name!r}")
        return found[0]

    def counts(self, username: str) -> dict[str, Any]:
        """Unread studies (in progress or completed, not yet reported): in all, and per saved filter."""
        now = self._clock()
        with self._index.session() as session:
            total = session.reading.count(ReadingCriteria(statuses=UNREAD), now, username)
            per_filter = {}
            for saved in session.reading.filters(username):
                if saved.name in per_filter:
                    continue  # the user's own filter hides a shared one of the same name (as criteria_of)
                unread = tuple(s for s in saved.criteria.statuses if s in UNREAD)
                if not unread:  # a list of read studies (preliminary, final...) has nothing unread
                    per_filter[saved.name] = 0
                    continue
                criteria = ReadingCriteria(**{**saved.criteria.__dict__, "statuses": unread})
                per_filter[saved.name] = session.reading.count(criteria, now, username)
        return {"unread": total, "filters": per_filter}

    # -- filters --------------------------------------------------------------------------------

    def filters(self, username: str) -> list[SavedFilter]:
        with self._index.session() as session:
            return session.reading.filters(username)

    def save_filter(self, name: str, criteria: ReadingCriteria, actor: Actor, *, shared: bool) -> SavedFilter:
        check_filter_name(name)
        owner = "" if shared else actor.id
        now = self._clock()
        with self._index.session(write=True) as session:
            session.reading.save_filter(name, owner, criteria.to_json(), now)
            self._audit(session, actor, "reading-filter-saved", "", {"name": name, "shared": shared,
                        "criteria": criteria.to_json()}, now)  # fmt: skip
        return SavedFilter(name, owner, criteria, now)

    def delete_filter(self, name: str, actor: Actor, *, shared: bool) -> None:
        now = self._clock()
        with self._index.session(write=True) as session:
            if not session.reading.delete_filter(name, "" if shared else actor.id):
                raise NotFound(f"no {'shared ' if shared else ''}reading filter named {name!r}")
            self._audit(session, actor, "reading-filter-deleted", "", {"name": name, "shared": shared}, now)

    # -- claims ---------------------------------------------------------------------------------

    def claim(self, study_instance_uid: str, actor: Actor) -> dict[str, Any]:
        """Take a study to read; Conflict (naming the reader) when another radiologist has it."""
        now = self._clock()
        with self._index.session(write=True) as session:
            if not session.reading.study_exists(study_instance_uid):
                raise NotFound(f"no study {study_instance_uid}")
            holder, since = session.reading.claim(study_instance_uid, actor.id, now)
            if holder != actor.id:
                raise Conflict(f"{holder} is reading this study (since {since:%Y-%m-%d %H:%M} UTC)")
            if since == now:
                self._audit(session, actor, "reading-claimed", study_instance_uid, {}, now)
        return {"study_instance_uid": study_instance_uid, "claimed_by": holder, "claimed_at": since.isoformat()}

    def release(self, study_instance_uid: str, actor: Actor, *, force: bool = False) -> None:
        """Give a study back; only its reader may, or an administrator with *force*."""
        now = self._clock()
        with self._index.session(write=True) as session:
            held = session.reading.claim_of(study_instance_uid)
            if held is None:
                raise NotFound(f"nobody is reading study {study_instance_uid}")
            if held[0] != actor.id and not force:
                raise Conflict(f"{held[0]} is reading this study: only they may release it")
            session.reading.release(study_instance_uid)
            self._audit(session, actor, "reading-released", study_instance_uid, {"reader": held[0], "forced":
                        held[0] != actor.id}, now)  # fmt: skip

    @staticmethod
    def _audit(session: IndexSession, actor: Actor, action: str, study: str, detail: dict[str, Any],
               now: datetime) -> None:  # fmt: skip
        objects = [{"level": "STUDY", "uid": study}] if study else []
        session.add_audit([AuditRecord(now, actor, action, "success", objects, detail)])

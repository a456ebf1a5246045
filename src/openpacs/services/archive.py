"""ArchiveService: counts, the change feed and the reconciliation inbox, read from the index."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from openpacs.domain.records import Change, Stats
from openpacs.ports.index import Conflict, Index


class ArchiveService:
    """Read-only views of the archive; thread-safe."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime]) -> None:
        self._index = index
        self._clock = clock

    def stats(self) -> Stats:
        """Counts of patients, studies, series, instances and stored bytes."""
        with self._index.session() as session:
            return session.stats()

    def changes_since(self, seq: int, limit: int = 100) -> list[Change]:
        """The change feed after *seq*, in commit order (ARCHITECTURE.md section 4)."""
        with self._index.session() as session:
            return session.changes_since(seq, limit)

    def last_change(self) -> int:
        """The newest sequence number of the feed."""
        with self._index.session() as session:
            return session.last_change_seq()

    def checkpoint(self, consumer: str) -> int:
        """Where a consumer of the feed stands."""
        with self._index.session() as session:
            return session.checkpoint(consumer)

    def save_checkpoint(self, consumer: str, seq: int) -> None:
        """Record a consumer's progress (delivery is at least once: consumers are idempotent)."""
        with self._index.session(write=True) as session:
            session.set_checkpoint(consumer, seq, self._clock())

    def identity_conflicts(self) -> list[Conflict]:
        """Open identity conflicts (the reconciliation inbox)."""
        with self._index.session() as session:
            return session.open_conflicts()

    def health(self) -> dict[str, object]:
        """A cheap check that the index answers."""
        with self._index.session() as session:
            last = session.last_change_seq()
        return {"database": self._index.dialect, "last_change": last}

    def audit(self, since: int = 0, limit: int = 100) -> list[dict[str, object]]:
        """Audit entries after entry *since*, oldest first."""
        with self._index.session() as session:
            return session.audit_entries(since, limit)

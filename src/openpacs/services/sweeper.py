"""The storage sweeper: removes blobs nothing refers to (ARCHITECTURE.md section 3, step 4).

Two sources of garbage: blobs queued in ``pending_deletion`` (superseded copies, after
their grace period; blobs of transactions that did not commit), and orphans that a
crash left between the durable write and the commit, found by listing the recent time
buckets of the store and looking each key up in the index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from openpacs.ports.blobstore import BlobStore
from openpacs.ports.index import Index

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep did."""

    deleted_pending: int = 0
    deleted_orphans: int = 0
    scanned: int = 0


class SweeperService:
    """Deletes garbage blobs; runs under the 'storage-sweeper' lease."""

    def __init__(
        self,
        index: Index,
        blobs: BlobStore,
        *,
        grace_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._grace = timedelta(seconds=grace_seconds)
        self._clock = clock

    def sweep_pending(self, limit: int = 1000) -> int:
        """Delete blobs whose pending deletion is due; returns how many."""
        now = self._clock()
        with self._index.session() as session:
            due = session.due_deletions(now, limit)
        if not due:
            return 0
        done = []
        for item in due:
            if item.store != self._blobs.name:
                continue
            with self._index.session() as session:
                in_use = session.keys_in_use(item.store, [item.key])
            if not in_use:
                self._blobs.delete(item.key)
            done.append(item.pk)
        with self._index.session(write=True) as session:
            session.remove_pending_deletions(done)
        return len(done)

    def scan_orphans(self, hours: int) -> SweepReport:
        """Delete blobs of the last *hours* that no location or pending deletion names.

        Blobs younger than the grace period are left alone: their transaction may still
        be about to commit.
        """
        report = SweepReport()
        with self._index.session() as session:
            if session.is_empty():
                # an empty index beside stored objects is one about to be rebuilt from them
                return report
        now = self._clock()
        cutoff = (now - self._grace).timestamp()
        for hour in range(hours, -1, -1):
            bucket = now - timedelta(hours=hour)
            listed = [(k, m) for k, m in self._blobs.list_bucket(bucket) if m < cutoff]
            if not listed:
                continue
            keys = [k for k, _ in listed]
            report.scanned += len(keys)
            with self._index.session() as session:
                known = session.keys_in_use(self._blobs.name, keys) | session.keys_pending(self._blobs.name, keys)
            for key in keys:
                if key not in known:
                    log.warning("removing orphan blob %s (no index entry)", key)
                    self._blobs.delete(key)
                    report.deleted_orphans += 1
        return report

    def sweep(self, orphan_hours: int = 0) -> SweepReport:
        """Pending deletions, then (optionally) an orphan scan."""
        report = self.scan_orphans(orphan_hours) if orphan_hours else SweepReport()
        report.deleted_pending = self.sweep_pending()
        return report

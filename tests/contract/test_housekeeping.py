"""Storage housekeeping and leases, on each index backend and blob store."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from helpers import TEST_ORIGIN, application
from openpacs.adapters.index.engine import SqlIndex
from openpacs.adapters.storage.filesystem import FilesystemBlobStore
from openpacs.domain.records import BlobRef
from samples import sample_file


def test_sweeper_removes_orphans_and_due_deletions_only(tmp_path: Path, database_url: str) -> None:
    store = FilesystemBlobStore(tmp_path / "storage")
    app = application(tmp_path, database_url, blobs=store, storage={"deletion_grace_seconds": 60})
    try:
        app.ingest.store(sample_file("CT_small.dcm").read_bytes(), TEST_ORIGIN)
        (kept,) = list((tmp_path / "storage").rglob("*.dcm"))
        now = datetime.now(UTC)
        # an orphan (a crash between the write and the commit), old enough, and a fresh one
        old_key, fresh_key = store.new_key(now), store.new_key(now)
        store.put(old_key, b"orphan")
        store.put(fresh_key, b"in flight")
        old = time.time() - 3600
        os.utime(store.root / old_key, (old, old))
        # a superseded blob whose grace period is over, and one still in its grace period
        due_key, later_key = store.new_key(now), store.new_key(now)
        store.put(due_key, b"superseded")
        store.put(later_key, b"superseded, still readable")
        with app.index.session(write=True) as session:
            session.add_pending_deletions([(BlobRef(store.name, due_key, 10), "test")], now - timedelta(seconds=1), now)
            session.add_pending_deletions([(BlobRef(store.name, later_key, 10), "test")], now + timedelta(hours=1), now)
        report = app.sweeper.sweep(orphan_hours=2)
        assert report.deleted_orphans == 1
        assert report.deleted_pending == 1
        assert not store.exists(old_key) and not store.exists(due_key)
        assert store.exists(fresh_key) and store.exists(later_key) and kept.exists()
    finally:
        app.close()


def test_pending_deletion_of_a_key_in_use_keeps_the_file(tmp_path: Path, database_url: str) -> None:
    store = FilesystemBlobStore(tmp_path / "storage")
    app = application(tmp_path, database_url, blobs=store)
    try:
        app.ingest.store(sample_file("CT_small.dcm").read_bytes(), TEST_ORIGIN)
        (path,) = list((tmp_path / "storage").rglob("*.dcm"))
        key = str(path.relative_to(store.root))
        now = datetime.now(UTC)
        with app.index.session(write=True) as session:
            session.add_pending_deletions([(BlobRef(store.name, key, 1), "outcome unknown")], now, now)
        app.sweeper.sweep_pending()
        assert path.exists()
    finally:
        app.close()


def test_a_lease_is_held_by_one_holder_at_a_time(database_url: str) -> None:
    first, second = SqlIndex(database_url), SqlIndex(database_url, migrate=False)
    try:
        assert first.try_lease("duty", "node-a", 30)
        assert first.try_lease("duty", "node-a", 30)  # renewal
        assert not second.try_lease("duty", "node-b", 30)
        first.release_lease("duty", "node-a")
        assert second.try_lease("duty", "node-b", 30)
    finally:
        first.close()
        second.close()


def test_blob_store_contract(tmp_path: Path) -> None:
    from openpacs.adapters.storage.memory import MemoryBlobStore

    for store in (FilesystemBlobStore(tmp_path / "fs"), MemoryBlobStore()):
        now = datetime.now(UTC)
        key = store.new_key(now)
        store.put(key, b"0123456789")
        assert store.read(key) == b"0123456789"
        assert store.read_range(key, 2, 4) == b"234"
        with store.open(key) as handle:
            assert handle.read() == b"0123456789"
        view = store.view(key)
        assert view.readonly and bytes(view) == b"0123456789"
        assert [k for k, _ in store.list_bucket(now)] == [key]
        store.put("journal/2026/01/02/000000000001.json", b"{}")
        assert sorted(k for k, _ in store.walk()) == sorted([key, "journal/2026/01/02/000000000001.json"])
        assert [k for k, _ in store.walk("journal/")] == ["journal/2026/01/02/000000000001.json"]
        assert all(abs(mtime - now.timestamp()) < 60 for _, mtime in store.walk())
        store.delete("journal/2026/01/02/000000000001.json")
        store.delete(key)
        store.delete(key)  # a missing object is not an error
        assert bytes(view) == b"0123456789"  # a view taken before stays readable
        assert not store.exists(key)
        with pytest.raises(FileNotFoundError):
            store.read(key)
        with pytest.raises(FileNotFoundError):
            store.view(key)
        empty = store.new_key(now)
        store.put(empty, b"")
        assert bytes(store.view(empty)) == b""

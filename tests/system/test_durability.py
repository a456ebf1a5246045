"""Nothing is acknowledged before it is durable: the file and its folder are fsync'd and
the index has committed before the C-STORE response leaves (an instrumented store)."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dimse_client import associate
from helpers import settings_for
from openpacs import bootstrap
from openpacs.adapters.storage.filesystem import FilesystemBlobStore
from openpacs.dimse.server import DimseServer
from samples import sample_file


class RecordingStore(FilesystemBlobStore):
    """Records when each fsync completes; can slow them down or make them fail."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=True)
        self.events: list[tuple[str, float]] = []
        self.delay = 0.0
        self.fail = False
        self.lock = threading.Lock()

    def fsync_file(self, fd: int) -> None:
        if self.fail:
            raise OSError(errno.EIO, "simulated I/O error")
        time.sleep(self.delay)
        super().fsync_file(fd)
        with self.lock:
            self.events.append(("file", time.monotonic()))

    def fsync_dir(self, folder: str) -> None:
        time.sleep(self.delay)
        super().fsync_dir(folder)
        with self.lock:
            self.events.append(("dir", time.monotonic()))


@pytest.fixture
def instrumented(tmp_path: Path) -> Iterator[tuple[RecordingStore, DimseServer, bootstrap.Application]]:
    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite3'}", dicom_port=0)
    store = RecordingStore(tmp_path / "storage")
    app = bootstrap.build(settings, blobs=store)
    server = bootstrap.dimse_server(app)
    server.start()
    try:
        yield store, server, app
    finally:
        server.stop()
        app.close()


def test_success_is_sent_after_file_and_folder_fsync(
    instrumented: tuple[RecordingStore, DimseServer, bootstrap.Application],
) -> None:
    store, server, app = instrumented
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    store.delay = 0.3
    with associate(server.port, contexts=[(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])]) as assoc:
        status = assoc.send_c_store(ds)
        answered = time.monotonic()
    assert status.Status == 0x0000
    kinds = [k for k, _ in store.events]
    assert "file" in kinds and kinds[-1] == "dir"
    file_done = max(t for k, t in store.events if k == "file")
    dir_done = max(t for k, t in store.events if k == "dir")
    assert file_done < dir_done < answered
    # and the index had committed: another connection sees the instance
    assert app.archive.stats().instances == 1


def test_a_failed_fsync_is_a_failed_store(
    instrumented: tuple[RecordingStore, DimseServer, bootstrap.Application],
) -> None:
    store, server, app = instrumented
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    store.fail = True
    with associate(server.port, contexts=[(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])]) as assoc:
        status = assoc.send_c_store(ds)
        assert status.Status != 0x0000
        store.fail = False
        # the association stays usable
        assert assoc.send_c_store(ds).Status == 0x0000
    assert app.archive.stats().instances == 1


def test_a_full_disk_is_refused_with_a700(tmp_path: Path) -> None:
    class FullStore(FilesystemBlobStore):
        def fsync_file(self, fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    settings = settings_for(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite3'}", dicom_port=0)
    app = bootstrap.build(settings, blobs=FullStore(tmp_path / "storage"))
    server = bootstrap.dimse_server(app)
    server.start()
    try:
        ds = pydicom.dcmread(sample_file("CT_small.dcm"))
        with associate(server.port, contexts=[(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])]) as assoc:
            status = assoc.send_c_store(ds)
        assert status.Status == 0xA700
        assert "storage is full" in status.ErrorComment
        assert app.archive.stats().instances == 0
        assert not list((tmp_path / "storage").rglob("*.dcm"))
    finally:
        server.stop()
        app.close()

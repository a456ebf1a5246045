"""Instance files in a folder tree: ``ROOT/YYYY/MM/DD/HH/<random>.dcm``.

A write is durable before :meth:`FilesystemBlobStore.put` returns: the file is fsync'd,
then its folder (and any folder created for it, up the tree) so that the directory
entry survives power loss too (ARCHITECTURE.md section 3, step 2).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from openpacs.ports.blobstore import StorageFull

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class FilesystemBlobStore:
    """A BlobStore on a local (or mounted) file system."""

    def __init__(self, root: Path, *, name: str = "fs", fsync: bool = True) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._name = name
        self._fsync = fsync
        self._known_dirs: set[str] = set()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def new_key(self, now: datetime) -> str:
        return f"{now:%Y/%m/%d/%H}/{uuid.uuid4().hex}.dcm"

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid storage key {key!r}")
        return self.root / key

    def _ensure_dir(self, folder: str) -> None:
        if folder in self._known_dirs:
            return
        with self._lock:
            if folder in self._known_dirs:
                return
            path = self.root / folder
            created: list[Path] = []
            probe = path
            while not probe.exists():
                created.append(probe)
                probe = probe.parent
            path.mkdir(parents=True, exist_ok=True)
            if self._fsync:
                # a new folder is durable once its parent's entry is: fsync up the tree
                for made in created:
                    self.fsync_dir(str(made.parent))
            self._known_dirs.add(folder)

    def put(self, key: str, data: bytes | memoryview) -> None:
        path = self._path(key)
        folder = key.rsplit("/", 1)[0]
        try:
            self._ensure_dir(folder)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self._fsync:
                    self.fsync_file(fd)
            finally:
                os.close(fd)
            if self._fsync:
                self.fsync_dir(str(path.parent))
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS:
                self._discard(path)
                raise StorageFull(f"no space left in {self.root}: {exc.strerror}") from exc
            self._discard(path)
            raise

    def fsync_file(self, fd: int) -> None:
        """fsync a written file (a seam for the durability test)."""
        os.fsync(fd)

    def fsync_dir(self, folder: str) -> None:
        """fsync a folder so that its entries are durable (a seam for the durability test)."""
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _discard(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def view(self, key: str) -> memoryview:
        # a memory map: no copy into the process; stored files never change, and the map
        # stays valid after the file is removed. It is unmapped once the last view goes.
        with self._path(key).open("rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        with self._path(key).open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start + 1)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def walk(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        start = self._path(prefix.rstrip("/")) if prefix else self.root
        for folder, _, files in os.walk(start):
            relative = os.path.relpath(folder, self.root)
            for name in files:
                key = name if relative == "." else f"{relative}/{name}"
                with contextlib.suppress(FileNotFoundError):
                    yield key.replace(os.sep, "/"), os.stat(os.path.join(folder, name)).st_mtime

    def list_bucket(self, when: datetime) -> Iterator[tuple[str, float]]:
        folder = f"{when:%Y/%m/%d/%H}"
        path = self.root / folder
        if not path.is_dir():
            return
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file():
                    yield f"{folder}/{entry.name}", entry.stat().st_mtime

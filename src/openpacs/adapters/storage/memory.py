"""A BlobStore in memory, for tests and throwaway servers."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO


class MemoryBlobStore:
    """Objects in a dict; nothing survives the process."""

    def __init__(self, *, name: str = "memory") -> None:
        self._name = name
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    def new_key(self, now: datetime) -> str:
        return f"{now:%Y/%m/%d/%H}/{uuid.uuid4().hex}.dcm"

    def put(self, key: str, data: bytes | memoryview) -> None:
        with self._lock:
            self._objects[key] = (bytes(data), time.time())

    def open(self, key: str) -> BinaryIO:
        return io.BytesIO(self.read(key))

    def read(self, key: str) -> bytes:
        with self._lock:
            try:
                return self._objects[key][0]
            except KeyError:
                raise FileNotFoundError(key) from None

    def view(self, key: str) -> memoryview:
        return memoryview(self.read(key))

    def read_range(self, key: str, start: int, end: int) -> bytes:
        return self.read(key)[start : end + 1]

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._objects

    def walk(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        with self._lock:
            found = [(k, v[1]) for k, v in self._objects.items() if k.startswith(prefix)]
        yield from found

    def list_bucket(self, when: datetime) -> Iterator[tuple[str, float]]:
        prefix = f"{when:%Y/%m/%d/%H}/"
        with self._lock:
            found = [(k, v[1]) for k, v in self._objects.items() if k.startswith(prefix)]
        yield from found

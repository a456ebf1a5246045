"""The BlobStore port: immutable instance files under opaque keys.

Five operations, as in Orthanc's storage area: write (durable before it returns),
read, read a range, delete, and list (for the orphan sweeper). Keys are opaque to
callers; stores put a time bucket in front (``YYYY/MM/DD/HH/``) so that the files
written in a given hour can be listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, Protocol


class StorageFull(Exception):
    """The store has no room for the object (a full disk, a quota)."""


class BlobStore(Protocol):
    """Where instance files live."""

    @property
    def name(self) -> str: ...

    def new_key(self, now: datetime) -> str:
        """A fresh, unused key in the time bucket of *now*."""
        ...

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Write an object; durable (fsync'd, or acknowledged by the object store) on return.

        Raises :class:`StorageFull` when there is no room.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable binary file of the object. Raises FileNotFoundError."""
        ...

    def read(self, key: str) -> bytes:
        """The whole object."""
        ...

    def view(self, key: str) -> memoryview:
        """The whole object as a read-only buffer, mapped rather than copied where the store
        can (a file's pages are sent from the page cache). Raises FileNotFoundError."""
        ...

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (inclusive) of the object."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; a missing object is not an error."""
        ...

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        ...

    def walk(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """Every key under *prefix* (a folder such as ``journal/``; "" for all), with its
        modification time (epoch seconds), in no particular order (the index rebuild)."""
        ...

    def list_bucket(self, when: datetime) -> Iterator[tuple[str, float]]:
        """Keys written in the hour of *when*, with their modification time (epoch seconds)."""
        ...

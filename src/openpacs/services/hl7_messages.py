"""The HL7 message store: every message received is stored raw, with its summary, before it
is acknowledged (HL7 v2.5.1 2.9.2, original acknowledgment mode, ACK after storage).

A message that cannot be read, or has an unsupported version or processing ID, is
stored too (status ``rejected``) and answered AR, with an ERR segment saying why. What
was accepted waits (status ``received``) for the consumer that applies it (ADT, orders,
results), in arrival order per sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from openpacs.domain.errors import NotFound
from openpacs.domain.hl7 import Hl7Error, MessageQuery, StoredMessage, Summary, ack, header, normalise, parse
from openpacs.ports.index import Index

log = logging.getLogger(__name__)

RECEIVED = "received"
REJECTED = "rejected"


class Hl7MessageService:
    """Receives, stores and finds HL7 messages; thread-safe."""

    def __init__(self, index: Index, *, clock: Callable[[], datetime], default_charset: str = "") -> None:
        self._index = index
        self._clock = clock
        self._default_charset = default_charset
        self.notify: Callable[[], None] | None = None  # wakes the consumer (set by the server)

    def receive(self, raw: bytes, peer: str) -> bytes:
        """Store a message as it came and answer it: AA once it is durable, AR when it cannot
        be taken (it is stored as rejected, with the reason)."""
        now = self._clock()
        try:
            _, summary = parse(raw, default_charset=self._default_charset)
        except Hl7Error as exc:
            return self._reject(raw, peer, now, exc)
        message = StoredMessage("in", now, RECEIVED, raw, summary, peer=peer, ack_code="AA")
        with self._index.session(write=True) as session:
            pk = session.hl7.add_message(message)
        if self.notify is not None:
            self.notify()
        return ack(summary, "AA", now=now, control_id=f"OPENPACS{pk}")

    def _reject(self, raw: bytes, peer: str, now: datetime, error: Hl7Error) -> bytes:
        summary: Summary | None
        try:
            summary = header(raw, default_charset=self._default_charset)
        except Hl7Error:
            summary = None
        message = StoredMessage("in", now, REJECTED, raw, summary, peer=peer, error=error.reason, ack_code="AR")
        with self._index.session(write=True) as session:
            pk = session.hl7.add_message(message)
        log.warning("HL7 message %d from %s rejected (AR): %s", pk, peer, error.reason)
        return ack(summary, "AR", now=now, control_id=f"OPENPACS{pk}", text=error.reason, error_code=error.error_code)

    def too_large(self, peer: str, limit: int) -> bytes:
        """The answer to a frame larger than the limit (its content is not kept)."""
        reason = f"the message is larger than the limit of {limit} bytes (hl7.max_message_bytes)"
        return self._reject(b"", peer, self._clock(), Hl7Error(reason, error_code="207"))

    def messages(self, query: MessageQuery) -> list[StoredMessage]:
        with self._index.session() as session:
            return session.hl7.messages(query)

    def counts(self) -> dict[str, int]:
        with self._index.session() as session:
            return session.hl7.message_counts()

    def show(self, pk: int) -> dict[str, Any]:
        """A message with its raw text and its segments and fields, numbered as in the standard."""
        with self._index.session() as session:
            found = session.hl7.message(pk)
        if found is None:
            raise NotFound(f"no HL7 message {pk}")
        out = found.to_json(with_raw=True)
        out["segments"] = segments_of(found.raw)
        return out


def segments_of(raw: bytes) -> list[dict[str, Any]]:
    """Segments as {"name", "fields": {"PID-3": "..."}} for reading (empty fields left out)."""
    data = normalise(raw)
    if not data.startswith(b"MSH") or len(data) < 8:
        return []
    separator = chr(data[3])
    text = data.decode("utf-8", "replace")
    out = []
    for line in text.split("\r"):
        parts = line.split(separator)
        name = parts[0][:3]
        fields: dict[str, str] = {}
        if name == "MSH":
            fields["MSH-1"] = separator
            for n, value in enumerate(parts[1:], start=2):
                if value:
                    fields[f"MSH-{n}"] = value
        else:
            for n, value in enumerate(parts[1:], start=1):
                if value:
                    fields[f"{name}-{n}"] = value
        out.append({"name": name, "fields": fields})
    return out

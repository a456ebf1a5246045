"""The HL7 message store: every message received is stored raw, with its summary, before it
is acknowledged (HL7 v2.5.1 2.9.2, original acknowledgment mode, ACK after storage).

A message that cannot be read, or has an unsupported version or processing ID, is
stored too (status ``rejected``) and answered AR, with an ERR segment saying why. What
was accepted waits (status ``received``) for the consumer that applies it (ADT, orders,
results), in arrival order per sender.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.hl7 import (
    Hl7Error,
    MessageQuery,
    StoredMessage,
    Summary,
    ack,
    dtm,
    header,
    normalise,
    parse,
    split_messages,
)
from openpacs.domain.hl7_fields import segments
from openpacs.domain.hl7_senders import AFTER_PROCESS, SenderDirectory, SenderPolicy, peer_address
from openpacs.domain.records import Actor
from openpacs.ports.index import AuditRecord, Index
from openpacs.services.commit import GroupCommitter

log = logging.getLogger(__name__)

RECEIVED = "received"
REJECTED = "rejected"
FAILED, SKIPPED, PROCESSED = "failed", "skipped", "processed"
BUSY_WINDOW = 0.010  # seconds after a receive during which the consumer gives way
ENHANCED = frozenset({"AL", "SU", "ER"})  # MSH-15 values that ask for a commit ACK


class Hl7MessageService:
    """Receives, stores and finds HL7 messages; thread-safe."""

    def __init__(
        self,
        index: Index,
        *,
        clock: Callable[[], datetime],
        default_charset: str = "",
        senders: SenderDirectory | None = None,
        process_timeout: float = 30.0,
        committer: GroupCommitter | None = None,
    ) -> None:
        self._index = index
        self._clock = clock
        self._default_charset = default_charset
        self._senders = senders or SenderDirectory()
        self._process_timeout = process_timeout
        self._committer = committer
        self.notify: Callable[[], None] | None = None  # wakes the consumer (set by the server)
        self._waiting: dict[int, tuple[threading.Event, list[Any]]] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_receive = 0.0

    def _store(self, message: StoredMessage) -> int:
        """Store a message durably. While several connections deliver at once, their messages
        share a transaction and its flush (group commit); a lone sender writes its own."""
        if self._committer is not None and self._in_flight > 1:
            return self._committer.submit(lambda session, batch: session.hl7.add_message(message))
        with self._index.session(write=True, dedicated=True) as session:
            return session.hl7.add_message(message)

    def busy(self) -> bool:
        """Whether messages are arriving now (one is being received, or one was within the last
        10 ms): the consumer then gives way, so that ACKs are not held up by its work."""
        return self._in_flight > 0 or time.monotonic() - self._last_receive < BUSY_WINDOW

    def receive(self, raw: bytes, peer: str) -> bytes:
        """Store a message as it came and answer it: AA once it is durable (or, for an
        after-process sender, once it is applied: AA, or AE naming the field at fault); AR
        when it cannot be taken (it is stored as rejected, with the reason)."""
        with self._lock:
            self._in_flight += 1
        try:
            data = normalise(raw)
            if data[:3] in (b"FHS", b"BHS"):
                return self._receive_batch(data, peer)
            return self._receive_one(raw, peer, wait=True)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_receive = time.monotonic()

    def _receive_batch(self, data: bytes, peer: str) -> bytes:
        """A batch (HL7 v2.5.1 2.10.3): each message stored and acknowledged on its own (without
        waiting for processing), the ACKs answered as a batch with the same envelope."""
        separator = chr(data[3]) if len(data) > 3 else "|"
        if separator.isalnum() or separator in " \r\n":
            separator = "|"
        lines = data.split(b"\r")
        now = dtm(self._clock())

        def head(name: bytes) -> str:
            """Our envelope segment answering theirs (sender and receiver swapped, -12 = their -11)."""
            line = next((x for x in lines if x.startswith(name)), lines[0])
            fields = line.decode("latin-1").split(separator)
            encoding = fields[1] if len(fields) > 1 and fields[1] else "^~\\&"

            def at(n: int) -> str:
                return fields[n - 1].strip() if len(fields) >= n else ""

            return name.decode() + separator.join(
                ["", encoding, at(5), at(6), at(3), at(4), now, "", "", "", f"OPENPACS{now}", at(11)]
            )

        acks = [self._receive_one(message, peer, wait=False) for message in split_messages(data)]
        body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
        out = (head(b"BHS") + "\r").encode("latin-1", "replace") + body
        out += f"BTS{separator}{len(acks)}\r".encode("latin-1")
        if data.startswith(b"FHS"):
            out = (head(b"FHS") + "\r").encode("latin-1", "replace") + out + f"FTS{separator}1\r".encode("latin-1")
        return out

    def _receive_one(self, raw: bytes, peer: str, *, wait: bool) -> bytes:
        now = self._clock()
        try:
            first = header(raw, default_charset=self._default_charset)
        except Hl7Error as exc:
            return self._reject(raw, peer, now, exc)
        policy = self._senders.find(first.sending_application, first.sending_facility, peer_address(peer))
        if policy is None:
            return self._reject(
                raw, peer, now,
                Hl7Error(f"sender {first.sender} at {peer_address(peer)} is not allowed (hl7.senders)",
                         error_code="207"),
            )  # fmt: skip
        charset = policy.charset or self._default_charset
        try:
            _, summary = parse(raw, default_charset=charset)
        except Hl7Error as exc:
            return self._reject(raw, peer, now, exc, charset)
        enhanced = summary.accept_ack_type.upper() in ENHANCED
        after_process = wait and policy.ack_mode == AFTER_PROCESS and not enhanced
        message = StoredMessage("in", now, RECEIVED, raw, summary, peer=peer, ack_code="AA")
        pk = self._store(message)
        waiter: tuple[threading.Event, list[Any]] | None = None
        if after_process:
            waiter = (threading.Event(), [])
            with self._lock:
                self._waiting[pk] = waiter
        if self.notify is not None:
            self.notify()
        if enhanced:
            # enhanced mode (HL7 v2.5.1 2.9.3): a commit ACK once stored; no application ACK is sent
            return ack(summary, "CA", now=now, control_id=f"OPENPACS{pk}")
        if waiter is None:
            return ack(summary, "AA", now=now, control_id=f"OPENPACS{pk}")
        return self._after_process(pk, summary, policy, waiter)

    def _after_process(
        self, pk: int, summary: Summary, policy: SenderPolicy, waiter: tuple[threading.Event, list[Any]]
    ) -> bytes:
        event, result = waiter
        deadline = self._process_timeout
        try:
            while not event.wait(min(0.5, deadline)):
                deadline -= 0.5
                with self._index.session() as session:  # applied by another node's consumer
                    found = session.hl7.message(pk)
                if found is not None and found.status != RECEIVED:
                    result.append((found.status, found.error, ""))
                    break
                if deadline <= 0:
                    break
        finally:
            with self._lock:
                self._waiting.pop(pk, None)
        now = self._clock()
        if not result:
            log.warning("HL7 message %d not applied within %.0f s: answered AA (it is stored and waits)",
                        pk, self._process_timeout)  # fmt: skip
            return ack(summary, "AA", now=now, control_id=f"OPENPACS{pk}")
        status, note, location = result[0]
        if status == FAILED:
            self._set_ack(pk, "AE")
            return ack(summary, "AE", now=now, control_id=f"OPENPACS{pk}", text=note, error_code="207",
                       error_location=location)  # fmt: skip
        return ack(summary, "AA", now=now, control_id=f"OPENPACS{pk}")

    def processed(self, pk: int, status: str, note: str, location: str) -> None:
        """Called by the consumer when a message is applied: wakes its after-process ACK."""
        with self._lock:
            waiter = self._waiting.get(pk)
        if waiter is not None:
            waiter[1].append((status, note, location))
            waiter[0].set()

    def _set_ack(self, pk: int, code: str) -> None:
        with self._index.session(write=True) as session:
            session.hl7.set_ack(pk, code)

    def _reject(self, raw: bytes, peer: str, now: datetime, error: Hl7Error, charset: str | None = None) -> bytes:
        summary: Summary | None
        try:
            summary = header(raw, default_charset=self._default_charset if charset is None else charset)
        except Hl7Error:
            summary = None
        message = StoredMessage("in", now, REJECTED, raw, summary, peer=peer, error=error.reason, ack_code="AR")
        pk = self._store(message)
        log.warning("HL7 message %d from %s rejected (AR): %s", pk, peer, error.reason)
        code = "CR" if summary is not None and summary.accept_ack_type.upper() in ENHANCED else "AR"
        return ack(summary, code, now=now, control_id=f"OPENPACS{pk}", text=error.reason, error_code=error.error_code)

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

    # -- the error queue ------------------------------------------------------------------------

    def error_queue(self, limit: int = 100) -> dict[str, Any]:
        """Failed messages, oldest first, each with the number of later messages it holds back
        (same sender, same patient)."""
        with self._index.session() as session:
            failed = session.hl7.messages(MessageQuery(status=FAILED, limit=limit))
            waiting = session.hl7.waiting_counts()
        out = []
        for message in reversed(failed):
            item = message.to_json()
            s = message.summary
            item["holds_back"] = waiting.get((s.sender, s.patient_id), 0) if s is not None and s.patient_id else 0
            out.append(item)
        return {"failed": out, "counts": self.counts()}

    def reprocess(self, pks: Sequence[int], actor: Actor) -> list[int]:
        """Put messages back in the queue (status received), for example after a mapping was
        fixed; a rejected message is read again as if it had just arrived. Returns those requeued."""
        return self._requeue(pks, actor, "hl7-reprocess", RECEIVED, (FAILED, SKIPPED, PROCESSED, REJECTED))

    def skip(self, pks: Sequence[int], actor: Actor) -> list[int]:
        """Set failed or waiting messages aside (status skipped): the messages they held back go on."""
        return self._requeue(pks, actor, "hl7-skip", SKIPPED, (FAILED, RECEIVED))

    def _requeue(
        self, pks: Sequence[int], actor: Actor, action: str, status: str, allowed: tuple[str, ...]
    ) -> list[int]:
        now = self._clock()
        done = []
        with self._index.session(write=True) as session:
            for pk in pks:
                found = session.hl7.message(pk)
                if found is None:
                    raise NotFound(f"no HL7 message {pk}")
                if found.direction != "in":
                    raise Conflict(f"HL7 message {pk} is outbound: it is not processed here")
                if found.status not in allowed:
                    raise Conflict(f"HL7 message {pk} is {found.status}: only {', '.join(allowed)} can be")
                if status == RECEIVED and found.status == REJECTED:
                    try:
                        _, summary = parse(found.raw, default_charset=self._default_charset)
                    except Hl7Error as exc:
                        raise Conflict(f"HL7 message {pk} still cannot be read: {exc.reason}") from exc
                    session.hl7.set_summary(pk, summary)
                note = f"{action} by {actor.id} at {now.isoformat(timespec='seconds')}"
                session.hl7.set_status(pk, status, note if status == SKIPPED else "", now)
                done.append(pk)
            session.add_audit(
                [AuditRecord(now, actor, action, "success", [{"level": "HL7", "uid": str(pk)} for pk in done], {})]
            )
        if status == RECEIVED and self.notify is not None:
            self.notify()
        return done

    def purge(self, retention_days: int) -> int:
        """Delete handled messages (processed, skipped, rejected) older than the retention."""
        if retention_days <= 0:
            return 0
        before = self._clock() - timedelta(days=retention_days)
        with self._index.session(write=True) as session:
            return session.hl7.delete_before(before, (PROCESSED, SKIPPED, REJECTED))


def segments_of(raw: bytes) -> list[dict[str, Any]]:
    """Segments as {"name", "fields": {"PID-3": "..."}} for reading (empty fields left out)."""
    data = normalise(raw)
    if not data.startswith(b"MSH") or len(data) < 8:
        return []
    return [
        {"name": s.name, "fields": {f"{s.name}-{n}": v for n, v in enumerate(s.fields[1:], start=1) if v}}
        for s in segments(data.decode("utf-8", "replace"))
    ]

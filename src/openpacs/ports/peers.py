"""Ports to remote systems: DICOM peers (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET as SCU)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openpacs.domain.hl7 import AckResult


@dataclass(frozen=True)
class PeerAddress:
    """How to reach a DICOM application entity."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class OutgoingInstance:
    """One instance to send: its identity, its stored encoding, and a way to get its bytes.

    ``data(accepted)`` returns the Part 10 bytes to send in one of the ``accepted``
    transfer syntaxes (the stored one when possible, else a lossless transcoding), or
    raises when none can be produced.
    """

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    data: Callable[[tuple[str, ...]], tuple[str, bytes | memoryview]]


@dataclass
class SendResult:
    """What happened to each instance of a C-STORE batch."""

    completed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> reason

    @property
    def attempted(self) -> int:
        """How many instances were tried."""
        return len(self.completed) + len(self.warnings) + len(self.failed)


class DicomPeer(Protocol):
    """Outbound DICOM: what the archive asks of other AEs."""

    def echo(self, peer: PeerAddress, *, timeout: float = 10.0) -> None:
        """C-ECHO; raises PeerError with a reason a PACS administrator understands."""
        ...

    def find(self, peer: PeerAddress, level: str, keys: dict[str, Any], *, limit: int = 10_000) -> list[dict[str, Any]]:
        """C-FIND as SCU: the answers as DICOM JSON; raises PeerError."""
        ...

    def move(
        self,
        peer: PeerAddress,
        level: str,
        uids: list[str],
        destination: str,
        *,
        progress: Callable[[dict[str, int]], bool] | None = None,
    ) -> dict[str, int]:
        """C-MOVE as SCU to *destination*; the final sub-operation counts; raises PeerError."""
        ...

    def get(
        self,
        peer: PeerAddress,
        level: str,
        uids: list[str],
        store: Callable[[bytes], int],
        *,
        sop_classes: Iterable[str] = (),
        progress: Callable[[dict[str, int]], bool] | None = None,
    ) -> dict[str, int]:
        """C-GET as SCU (PS3.4 C.4.3) at *level* ("STUDY", "SERIES" or "IMAGE") of *uids*.

        The peer sends the instances on the same association: *store(part10)* receives
        each as Part 10 bytes (File Meta Information and data set, in the transfer syntax
        it arrived in) and returns the C-STORE status to answer (0x0000, 0xB000...,
        0xA700..., 0xC000...; an exception answers 0xC000). *sop_classes* are the storage
        SOP classes offered (empty: the common ones); *progress(counts)* sees each pending
        answer and returns False to cancel. Returns the final counts ``remaining``,
        ``completed``, ``failed``, ``warning`` and ``status`` (0x0000, 0xB000 or 0xFE00);
        any other status, a refused or lost association raises PeerError.
        """
        ...

    def send(
        self,
        peer: PeerAddress,
        instances: Iterable[OutgoingInstance],
        *,
        move_originator: tuple[str, int] | None = None,
        progress: Callable[[str, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> SendResult:
        """C-STORE every instance over one association (PS3.4 B.2)."""
        ...


class Hl7Connection(Protocol):
    """One open MLLP connection to an HL7 receiver."""

    def send(self, message: bytes) -> AckResult:
        """Send one message and read its ACK (HL7 v2.5.1 Appendix C); raises OSError when the
        connection fails or the ACK does not come in time."""
        ...

    def close(self) -> None: ...


class Hl7Peer(Protocol):
    """Sending HL7 v2 messages over MLLP."""

    def connect(self, host: str, port: int, *, timeout: float) -> Hl7Connection: ...


class NormalizedPeer(Protocol):
    """N-CREATE and N-SET to a DICOM peer (PS3.7 10.1.5, 10.1.3): MPPS forwarding, Instance
    Availability Notification. Each raises PeerError when the peer cannot be reached or does not
    take the SOP class; a refusal comes back as its status."""

    def n_create(
        self, peer: PeerAddress, sop_class_uid: str, sop_instance_uid: str, dataset: dict[str, Any]
    ) -> int: ...
    def n_set(self, peer: PeerAddress, sop_class_uid: str, sop_instance_uid: str, dataset: dict[str, Any]) -> int: ...

"""Who may send HL7 messages, and how each sender is treated (the ``[[hl7.senders]]`` entries).

A sender is named by its sending application and facility (MSH-3, MSH-4) and, optionally,
the addresses it connects from. Per sender: the ACK mode (HL7 v2.5.1 2.9.2 original mode:
``after-store``, AA once the message is durable; ``after-process``, AA or AE once it is
applied), the character set of messages without MSH-18, the identity domain of its
patient identifiers, and field mappings that replace the defaults of
``openpacs.domain.hl7_orders``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openpacs.domain.addresses import address_in
from openpacs.domain.hl7_fields import FieldSpec

AFTER_STORE, AFTER_PROCESS = "after-store", "after-process"


@dataclass(frozen=True)
class SenderPolicy:
    application: str = ""  # MSH-3.1 ("" = any)
    facility: str = ""  # MSH-4.1 ("" = any)
    addresses: tuple[str, ...] = ()  # IP addresses or networks (CIDR) it may connect from (() = any)
    ack_mode: str = AFTER_STORE
    charset: str = ""  # MSH-18 value for messages without one ("" = the global default)
    default_issuer: str | None = None  # issuer of its patient IDs (None = the site's)
    authorities: dict[str, str] = field(default_factory=dict)  # CX-4 -> issuer
    mapping: dict[str, tuple[FieldSpec, ...]] = field(default_factory=dict)

    def matches(self, application: str, facility: str, address: str) -> bool:
        if self.application and self.application.upper() != _first(application).upper():
            return False
        if self.facility and self.facility.upper() != _first(facility).upper():
            return False
        return not self.addresses or address_in(address, self.addresses)


def _first(value: str) -> str:
    return value.split("^", maxsplit=1)[0].strip()


@dataclass(frozen=True)
class SenderDirectory:
    """The configured senders; *accept_unknown* says whether others are taken (with defaults)."""

    senders: tuple[SenderPolicy, ...] = ()
    accept_unknown: bool = True

    def find(self, application: str, facility: str, address: str) -> SenderPolicy | None:
        for sender in self.senders:
            if sender.matches(application, facility, address):
                return sender
        return SenderPolicy() if self.accept_unknown else None


def peer_address(peer: str) -> str:
    """The IP of "host:port" (IPv6 addresses keep their colons)."""
    return peer.rsplit(":", 1)[0].strip("[]") if ":" in peer else peer

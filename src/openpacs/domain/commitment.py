"""Storage commitment (PS3.4 Annex J, Push Model): what was asked for and what the peer answered.

We ask a destination to commit to keeping the instances we forwarded (N-ACTION, Action Type
1, with a Transaction UID); it answers with an N-EVENT-REPORT (Event Type 1: all committed;
2: some failed, with a Failure Reason each, PS3.3 C.14.1.1), on the same association or on
one it opens to us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known SOP Instance

# PS3.3 C.14.1.1 Failure Reason
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0213: "resource limitation",
    0x0122: "referenced SOP Class not supported",
    0x0119: "class / instance conflict",
    0x0131: "duplicate transaction UID",
}


class CommitmentState(StrEnum):
    REQUESTED = "requested"  # N-ACTION accepted, no answer yet
    COMMITTED = "committed"  # every instance committed
    FAILED = "failed"  # the peer could not commit some


@dataclass(frozen=True)
class CommitmentResult:
    """An N-EVENT-REPORT's Event Information."""

    transaction_uid: str
    committed: list[tuple[str, str]] = field(default_factory=list)  # (SOP Class UID, SOP Instance UID)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # ... and the Failure Reason

    @property
    def event_type(self) -> int:
        return 2 if self.failed else 1


def failure_text(reason: int) -> str:
    return f"0x{reason:04X} {FAILURE_REASONS.get(reason, 'unknown reason')}"

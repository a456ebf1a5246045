"""Users, roles and what each role may do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """The roles of a PACS department."""

    ADMIN = "admin"
    RADIOLOGIST = "radiologist"
    TECHNOLOGIST = "technologist"
    VIEWER = "viewer"
    INTEGRATION = "integration"


class Permission(StrEnum):
    """What a request may need."""

    READ = "read"  # query, retrieve, view images and metadata
    STORE = "store"  # STOW-RS
    DELETE = "delete"  # delete studies, series, instances
    ECHO = "echo"  # C-ECHO other nodes
    MANAGE_NODES = "manage-nodes"
    MANAGE_USERS = "manage-users"
    AUDIT = "audit"  # read the audit trail
    CHANGES = "changes"  # read the change feed
    SYSTEM = "system"  # system information
    RECONCILE = "reconcile"  # corrections of identity (openpacs qa, /api/qa)
    ROUTING = "routing"  # routing rules, jobs and alerts (/api/routes, /api/jobs, /api/alerts)
    HL7 = "hl7"  # the HL7 message store (/api/hl7)
    WORKFLOW = "workflow"  # worklist entries, procedure status, workflow rules (/api/worklist, /api/workflow)
    READING = "reading"  # reading worklists: saved filters, claim and release of studies (/api/reading)


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.RADIOLOGIST: frozenset({Permission.READ, Permission.READING}),
    Role.TECHNOLOGIST: frozenset({Permission.READ, Permission.STORE, Permission.ECHO}),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.INTEGRATION: frozenset({Permission.READ, Permission.STORE, Permission.CHANGES}),
}


@dataclass(frozen=True)
class User:
    """A local user account."""

    pk: int
    name: str
    role: Role
    must_change_password: bool = False
    disabled: bool = False
    created_at: datetime | None = None
    last_login_at: datetime | None = None

    def can(self, permission: Permission) -> bool:
        """Whether the user's role grants *permission*."""
        return not self.disabled and permission in ROLE_PERMISSIONS[self.role]

"""NodeService: the DICOM nodes we know, and who may do what (PS3.8 association policy).

Nodes live in the index, so that a node added with ``openpacs node add`` while the
server runs takes effect at the next association. A calling AE title that is no node
is accepted for echo, store, find and get while the server listens on loopback only
(the embedded default), and refused once it listens beyond loopback, unless the
configuration says otherwise.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from enum import StrEnum

from openpacs.domain.addresses import is_loopback
from openpacs.domain.errors import Conflict, NotFound
from openpacs.domain.records import Actor, Issuer, Node, Origin
from openpacs.ports.index import AuditRecord, Index


class Service(StrEnum):
    """What a calling AE asks to do."""

    ECHO = "echo"
    STORE = "store"
    FIND = "find"
    GET = "get"
    MOVE = "move"


@dataclass(frozen=True)
class AccessDecision:
    """Whether an association may proceed, and for which services."""

    allowed: bool
    reason: str
    node: Node | None
    services: frozenset[Service]


log = logging.getLogger(__name__)
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


class NodeService:
    """Nodes and access decisions; thread-safe."""

    def __init__(
        self,
        index: Index,
        *,
        listen_host: str,
        accept_unknown: str,
        default_issuer: Issuer,
        clock: Callable[[], datetime],
    ) -> None:
        self._index = index
        self._clock = clock
        self._default_issuer = default_issuer
        if accept_unknown == "always":
            self._accept_unknown = True
        elif accept_unknown == "never":
            self._accept_unknown = False
        else:
            self._accept_unknown = is_loopback(listen_host)

    @property
    def accepts_unknown(self) -> bool:
        """Whether calling AEs that are no node are accepted."""
        return self._accept_unknown

    # -- management ---------------------------------------------------------------------

    def all(self) -> list[Node]:
        """All nodes, by name."""
        with self._index.session() as session:
            return session.nodes()

    def get(self, name: str) -> Node:
        """A node by name (raises NotFound)."""
        with self._index.session() as session:
            node = session.node(name)
        if node is None:
            raise NotFound(f"no node named {name!r}")
        return node

    @staticmethod
    def _checked(node: Node) -> Node:
        if not _AE_TITLE.match(node.ae_title) or not node.ae_title.strip():
            raise Conflict(f"invalid AE title {node.ae_title!r}: 1 to 16 printable characters, no backslash")
        if not 1 <= node.port <= 65535:
            raise Conflict(f"invalid port {node.port}")
        return replace(node, ae_title=node.ae_title.strip())

    def add(self, node: Node, actor: Actor) -> Node:
        """Add a node (raises Conflict when the name or AE title is taken)."""
        node = self._checked(node)
        now = self._clock()
        with self._index.session(write=True) as session:
            if session.node(node.name) is not None:
                raise Conflict(f"a node named {node.name!r} exists already")
            if session.node_by_ae_title(node.ae_title) is not None:
                raise Conflict(f"a node with AE title {node.ae_title!r} exists already")
            session.add_node(node, now)
            session.add_audit(
                [
                    AuditRecord(
                        now,
                        actor,
                        "node-add",
                        "success",
                        [{"level": "NODE", "uid": node.name}],
                        {"ae_title": node.ae_title, "host": node.host, "port": node.port},
                    )
                ]
            )
        return node

    def update(self, name: str, node: Node, actor: Actor) -> Node:
        """Change a node, its name included (raises NotFound, or Conflict when the new name or AE
        title belongs to another node); effective at the next association."""
        node = self._checked(node)
        now = self._clock()
        with self._index.session(write=True) as session:
            before = session.node(name)
            if before is None:
                raise NotFound(f"no node named {name!r}")
            other = session.node(node.name)
            if other is not None and node.name != name:
                raise Conflict(f"a node named {node.name!r} exists already")
            other = session.node_by_ae_title(node.ae_title)
            if other is not None and other.name != name:
                raise Conflict(f"a node with AE title {node.ae_title!r} exists already")
            session.update_node(name, node, now)
            changed = {k: v for k, v in asdict(node).items() if asdict(before).get(k) != v}
            session.add_audit(
                [AuditRecord(now, actor, "node-update", "success", [{"level": "NODE", "uid": name}], changed)]
            )
        return node

    def remove(self, name: str, actor: Actor) -> None:
        """Remove a node (raises NotFound)."""
        now = self._clock()
        with self._index.session(write=True) as session:
            if not session.remove_node(name):
                raise NotFound(f"no node named {name!r}")
            session.add_audit([AuditRecord(now, actor, "node-remove", "success", [{"level": "NODE", "uid": name}])])

    def seed(self, nodes: list[Node], actor: Actor) -> None:
        """Create configured nodes that do not exist yet (the file seeds, the DB rules)."""
        existing = {n.name for n in self.all()}
        for node in nodes:
            if node.name not in existing:
                try:
                    self.add(node, actor)
                except Conflict as exc:
                    log.warning("node %r of the configuration file is not created: %s", node.name, exc.reason)

    def resolve(self, target: str) -> Node:
        """A node by name, or an ad hoc one from 'AE@HOST:PORT'."""
        match = re.fullmatch(r"(?P<ae>[^@]{1,16})@(?P<host>[^:@]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})", target)
        if match:
            host = match["host"].strip("[]")
            return Node(name=target, ae_title=match["ae"], host=host, port=int(match["port"]))
        return self.get(target)

    # -- access ---------------------------------------------------------------------------

    def decide(self, calling_ae: str, address: str) -> AccessDecision:
        """The access policy for an association request from *calling_ae* at *address*."""
        calling_ae = calling_ae.strip()
        with self._index.session() as session:
            node = session.node_by_ae_title(calling_ae)
        if node is None:
            if not self._accept_unknown:
                return AccessDecision(
                    False, f"calling AE title {calling_ae!r} is not a configured node", None, frozenset()
                )
            return AccessDecision(
                True,
                "unknown calling AE accepted (loopback)",
                None,
                frozenset({Service.ECHO, Service.STORE, Service.FIND, Service.GET}),
            )
        if node.check_host and not _same_host(node.host, address):
            return AccessDecision(
                False,
                f"calling AE title {calling_ae!r} is expected from {node.host}, not {address}",
                node,
                frozenset(),
            )
        services = {Service.ECHO}
        if node.allow_store:
            services.add(Service.STORE)
        if node.allow_find:
            services.add(Service.FIND)
        if node.allow_get:
            services.update({Service.GET, Service.MOVE})
        return AccessDecision(True, "configured node", node, frozenset(services))

    def origin(self, decision: AccessDecision, calling_ae: str, called_ae: str, address: str) -> Origin:
        """The receive context of objects arriving on an association."""
        issuer = self._default_issuer
        if decision.node is not None and decision.node.default_issuer:
            issuer = Issuer(decision.node.default_issuer)
        return Origin(
            actor=Actor.dicom(calling_ae.strip(), address),
            transport="c-store",
            called_ae=called_ae.strip(),
            calling_ae=calling_ae.strip(),
            default_issuer=issuer,
        )

    def move_destination(self, ae_title: str) -> Node | None:
        """The node a C-MOVE may send to, by AE title (None when unknown or not allowed)."""
        with self._index.session() as session:
            node = session.node_by_ae_title(ae_title.strip())
        if node is None or not node.allow_move_destination:
            return None
        return node

    @property
    def default_issuer(self) -> Issuer:
        """The site's default issuer of patient IDs."""
        return self._default_issuer


def _same_host(expected: str, address: str) -> bool:
    if expected == address:
        return True
    try:
        infos = socket.getaddrinfo(expected, None)
    except OSError:
        return False
    return any(info[4][0] == address for info in infos)

"""NetworkService: C-ECHO and C-STORE to other nodes, for the administrator (CLI, console)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from openpacs.domain.errors import OpenPacsError
from openpacs.domain.part10 import ParsedInstance, looks_like_dicom
from openpacs.ports.peers import DicomPeer, OutgoingInstance, PeerAddress, SendResult
from openpacs.services.ingest import IngestService
from openpacs.services.nodes import NodeService
from openpacs.services.outbound import dataset_offset


def iter_files(paths: Iterable[Path]) -> Iterable[Path]:
    """Files under the given paths, recursively, in a stable order."""
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


class NetworkService:
    """Echo and send; thread-safe."""

    def __init__(self, nodes: NodeService, peer: DicomPeer, ingest: IngestService) -> None:
        self._nodes = nodes
        self._peer = peer
        self._ingest = ingest

    def address(self, target: str) -> PeerAddress:
        """A node name or 'AE@HOST:PORT' as an address (raises NotFound)."""
        node = self._nodes.resolve(target)
        return PeerAddress(node.ae_title, node.host, node.port)

    def echo(self, target: str, *, timeout: float = 10.0) -> PeerAddress:
        """C-ECHO a node; raises PeerError with the reason in plain words."""
        address = self.address(target)
        self._peer.echo(address, timeout=timeout)
        return address

    def send_files(
        self,
        target: str,
        paths: Iterable[Path],
        *,
        progress: Callable[[str, int], None] | None = None,
        skipped: Callable[[Path, str], None] | None = None,
    ) -> SendResult:
        """C-STORE DICOM files to a node over one association, as they are on disk."""
        address = self.address(target)
        outgoing: list[OutgoingInstance] = []
        for path in iter_files(paths):
            try:
                data = path.read_bytes()
                if not looks_like_dicom(data):
                    raise OpenPacsError("not a DICOM file")
                parsed = self._ingest.parse(data)
            except (OSError, OpenPacsError) as exc:
                if skipped is not None:
                    skipped(path, getattr(exc, "reason", None) or str(exc))
                continue
            outgoing.append(_file_instance(path, parsed))
        return self._peer.send(address, outgoing, progress=progress)


def _file_instance(path: Path, parsed: ParsedInstance) -> OutgoingInstance:
    def data(accepted: tuple[str, ...]) -> tuple[str, bytes | memoryview]:
        if parsed.transfer_syntax_uid not in accepted:
            raise OpenPacsError(f"the peer does not accept {parsed.transfer_syntax_uid}; files are sent as they are")
        raw = path.read_bytes()
        return parsed.transfer_syntax_uid, raw[dataset_offset(raw) :] if parsed.has_meta else raw

    return OutgoingInstance(parsed.sop_class_uid, parsed.sop_instance_uid, parsed.transfer_syntax_uid, data)

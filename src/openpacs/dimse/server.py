"""The DICOM listener: accepts associations and serves each on its own thread (PS3.8 7.1).

Negotiation goes through pynetdicom (see :mod:`openpacs.dimse.negotiation`); the data
transfer phase through :mod:`openpacs.dimse.scp`. Each association is logged when it
ends: calling AE, address, what was done, duration.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass

from openpacs.dimse import pdu
from openpacs.dimse.negotiation import (
    REJECT_BUSY,
    REJECT_CALLED_AE,
    REJECT_CALLING_AE,
    accept,
    decode_request,
    reject,
)
from openpacs.dimse.scp import DimseServices, ScpSession

log = logging.getLogger("openpacs.dimse")


@dataclass(frozen=True)
class DimseConfig:
    """Listener settings (from Settings.dicom)."""

    host: str
    port: int
    ae_title: str
    max_pdu: int = 1_048_576
    acse_timeout: float = 30.0
    network_timeout: float = 120.0
    max_associations: int = 64
    check_called_ae: bool = False
    reuse_port: bool = False


class DimseServer:
    """Listens for associations until stopped."""

    def __init__(self, config: DimseConfig, services: DimseServices) -> None:
        self.config = config
        self.services = services
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._active: dict[int, socket.socket] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def start(self) -> None:
        """Bind and start accepting on a background thread."""
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((self.config.host, self.config.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="dimse-listener", daemon=True)
        self._thread.start()
        log.info("DICOM service %s listening on %s:%d", self.config.ae_title, self.config.host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let running associations finish for up to *timeout*, then abort them."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    return
            time.sleep(0.05)
        with self._lock:
            for sock in self._active.values():
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, address = self._listener.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            thread = threading.Thread(
                target=self._serve, args=(sock, address), name=f"association-{address[0]}:{address[1]}", daemon=True
            )
            thread.start()

    def _serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        key = id(sock)
        with self._lock:
            busy = len(self._active) >= self.config.max_associations
            self._active[key] = sock
        try:
            self._serve_association(sock, address, busy)
        except Exception:
            log.exception("association from %s:%d failed", *address[:2])
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            with self._lock:
                self._active.pop(key, None)

    def _serve_association(self, sock: socket.socket, address: tuple[str, int], busy: bool) -> None:
        started = time.monotonic()
        pdu.tune_socket(sock)
        sock.settimeout(self.config.acse_timeout)
        pdus = pdu.PduSocket(sock, max_receive=self.config.max_pdu)
        peer = f"{address[0]}:{address[1]}"
        try:
            pdu_type, body = pdus.read_pdu()
        except (OSError, pdu.ConnectionClosed, pdu.ProtocolError) as exc:
            log.info("connection from %s closed before an association request (%s)", peer, exc)
            pdus.close()
            return
        if pdu_type != pdu.A_ASSOCIATE_RQ:
            log.warning("connection from %s sent PDU type %d instead of A-ASSOCIATE-RQ; aborting", peer, pdu_type)
            pdus.send(pdu.abort(0x02, 0x02))
            pdus.close()
            return
        try:
            request = decode_request(body)
        except Exception as exc:
            log.warning("malformed A-ASSOCIATE-RQ from %s (%s); aborting", peer, exc)
            pdus.send(pdu.abort(0x02, 0x06))
            pdus.close()
            return
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        decision = self.services.nodes.decide(calling, address[0])
        rejection = None
        if not decision.allowed:
            rejection = REJECT_CALLING_AE
        elif self.config.check_called_ae and called != self.config.ae_title:
            rejection = REJECT_CALLED_AE
        elif busy:
            rejection = REJECT_BUSY
        if rejection is not None:
            reason = decision.reason if not decision.allowed else str(rejection)
            log.warning("association from %s@%s rejected: %s", calling, peer, reason)
            reject(pdus, rejection)
            return
        assoc = accept(pdus, request, ae_title=self.config.ae_title, max_pdu=self.config.max_pdu, address=address)
        sock.settimeout(self.config.network_timeout)
        origin = self.services.nodes.origin(decision, calling, called, address[0])
        session = ScpSession(assoc, self.services, decision, origin)
        ending = session.run()
        log.info(
            "association %s@%s -> %s: %s; %s after %.2f s",
            calling,
            peer,
            called,
            session.log.summary(),
            ending,
            time.monotonic() - started,
        )

"""The MLLP listener (HL7 v2.5.1 Appendix C) on asyncio's public API.

Each connection reads frames in order; each message goes to the message store on a thread of
the listener's own pool (``run_in_executor``, as ``asyncio.to_thread`` does) and its ACK is
written, framed, in one send, before the next message of that connection is read. TCP_NODELAY
is set on every connection. A broken frame (cut short by the next one, or by the end of the
connection) is logged; a frame over the size limit is answered AR; nothing a peer sends
stops the listener.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from openpacs.hl7.mllp import FrameDecoder, frame

log = logging.getLogger("openpacs.hl7")


class MllpServer:
    """Accepts MLLP connections and answers every message with the service's ACK."""

    def __init__(
        self,
        receive: Callable[[bytes, str], bytes],
        too_large: Callable[[str, int], bytes],
        *,
        host: str,
        port: int,
        max_message_bytes: int,
    ) -> None:
        self._receive = receive
        self._too_large = too_large
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # the service calls run on these threads (the default executor's are shared with others)
        self._executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="hl7-receive")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("HL7 MLLP service listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await self._server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = writer.get_extra_info("peername") or ("?", 0)
        peer = f"{address[0]}:{address[1]}"
        decoder = FrameDecoder(self.max_message_bytes)
        loop = asyncio.get_running_loop()
        messages = 0
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for found in decoder.feed(data):
                    if found.truncated:
                        log.warning("HL7 from %s: a frame cut short by the next one was dropped (%d bytes)",
                                    peer, len(found.data))  # fmt: skip
                        continue
                    if found.too_large:
                        answer = await loop.run_in_executor(
                            self._executor, self._too_large, peer, self.max_message_bytes
                        )
                    else:
                        answer = await loop.run_in_executor(self._executor, self._receive, found.data, peer)
                    messages += 1
                    writer.write(frame(answer))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("HL7 connection from %s lost: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("HL7 connection from %s", peer)
        finally:
            if decoder.pending:
                log.warning("HL7 from %s: the connection ended inside a frame (%d bytes dropped, not ACKed)",
                            peer, len(decoder.pending))  # fmt: skip
            log.info("HL7 connection from %s closed after %d messages", peer, messages)
            writer.close()
            if task is not None:
                self._connections.discard(task)

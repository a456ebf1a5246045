"""MLLP framing (HL7 v2.5.1 Appendix C, Minimal Lower Layer Protocol): each message is sent
as ``0x0B`` + message + ``0x1C 0x0D``.

:class:`FrameDecoder` takes bytes as they arrive and hands out whole frames: a frame may
be split across reads, several may come in one read. Bytes outside a frame (stray line
ends between frames) are dropped; a frame that grows beyond the maximum size is reported
once and skipped to its end.
"""

from __future__ import annotations

from dataclasses import dataclass

START = b"\x0b"
END = b"\x1c\x0d"


@dataclass(frozen=True)
class Frame:
    """A whole message; or the notice that one was skipped: ``too_large``, or ``truncated``
    (a new frame started before this one ended: *data* holds what came of it)."""

    data: bytes
    too_large: bool = False
    truncated: bool = False


def frame(message: bytes) -> bytes:
    """*message* framed for sending."""
    return START + message + END


class FrameDecoder:
    """Incremental MLLP decoder for one connection."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._inside = False
        self._skipping = False

    @property
    def pending(self) -> bytes:
        """What an unfinished frame holds (a truncated frame when the connection ends)."""
        return bytes(self._buffer) if self._inside else b""

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by *data*."""
        out: list[Frame] = []
        pos = 0
        if self._inside and not self._skipping and self._buffer.endswith(b"\x1c") and data.startswith(b"\r"):
            # the end marker was split between two reads
            del self._buffer[-1]
            out.append(self._close())
            pos = 1
        while pos < len(data):
            if not self._inside:
                start = data.find(START, pos)
                if start < 0:
                    return out  # noise between frames (stray line ends)
                self._inside, self._skipping = True, False
                self._buffer.clear()
                pos = start + 1
                continue
            end = data.find(END, pos)
            stop = end if end >= 0 else len(data)
            restart = data.find(START, pos, stop)
            if restart >= 0:
                # a new frame begins before this one ended: this one was truncated
                if not self._skipping:
                    self._buffer += data[pos:restart]
                    out.append(Frame(bytes(self._buffer), truncated=True))
                self._inside = False
                self._buffer.clear()
                pos = restart
                continue
            if not self._skipping:
                if len(self._buffer) + (stop - pos) > self.max_size:
                    self._skipping = True
                    self._buffer.clear()
                    out.append(Frame(b"", too_large=True))
                else:
                    self._buffer += data[pos:stop]
            if end < 0:
                return out
            if self._skipping:
                self._inside = False
            else:
                out.append(self._close())
            pos = end + len(END)
        return out

    def _close(self) -> Frame:
        self._inside = False
        found = Frame(bytes(self._buffer))
        self._buffer.clear()
        return found

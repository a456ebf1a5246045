"""STOW-RS as a client (PS3.18 10.5): forwarding to a DICOMweb server.

One request per batch: ``multipart/related; type="application/dicom"`` to
``{url}/studies``. 200: all stored; 202: some failed (Failed SOP Sequence (0008,1198)
names them, with Failure Reason (0008,1197)); 409: all failed (the same sequence says
why). Anything else, or no answer, raises PeerError (the job retries later).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

from openpacs.domain.errors import PeerError
from openpacs.domain.part10 import encode_file_meta
from openpacs.domain.records import StoredInstance

Encode = Callable[[StoredInstance, tuple[str, ...]], tuple[str, bytes | memoryview]]


class StowClient:
    """Sends instances to DICOMweb servers; thread-safe."""

    def __init__(self, encode: Encode, *, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
        self._encode = encode
        self._timeout = timeout
        self._headers = headers or {}

    def __call__(self, url: str, instances: list[StoredInstance], accepted: tuple[str, ...]) -> dict[str, str]:
        """STOW-RS *instances*; returns the refused ones (SOP Instance UID -> reason)."""
        boundary = f"openpacs-{uuid.uuid4().hex}"
        parts = []
        for instance in instances:
            wanted = accepted or (instance.transfer_syntax_uid, "1.2.840.10008.1.2.1")
            syntax, data = self._encode(instance, wanted)
            meta = encode_file_meta(syntax, instance.sop_class_uid, instance.sop_instance_uid, "")
            parts.append(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + meta + bytes(data) + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        if not url.startswith(("http://", "https://")):
            raise PeerError(f"{url!r} is not an http(s) URL")
        request = urllib.request.Request(  # noqa: S310 - checked just above
            url.rstrip("/") + "/studies",
            data=body,
            method="POST",
            headers={
                **self._headers,
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": "application/dicom+json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - a configured URL
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise PeerError(f"{url} cannot be reached: {getattr(exc, 'reason', exc)}") from exc
        if status == 200:
            return {}
        if status in (202, 409):
            return _failed(payload, status) or {i.sop_instance_uid: f"HTTP {status}" for i in instances}
        raise PeerError(f"{url} answered the STOW-RS with HTTP {status}")


def _failed(payload: bytes, status: int) -> dict[str, str]:
    try:
        answer = json.loads(payload or b"{}")
    except ValueError:
        return {}
    if isinstance(answer, list):
        answer = answer[0] if answer else {}
    out = {}
    for item in (answer.get("00081198") or {}).get("Value", []):
        uid = ((item.get("00081155") or {}).get("Value") or [""])[0]
        reason = ((item.get("00081197") or {}).get("Value") or [""])[0]
        if uid:
            out[uid] = f"status 0x{int(reason):04X}" if isinstance(reason, int) else f"HTTP {status}"
    return out
